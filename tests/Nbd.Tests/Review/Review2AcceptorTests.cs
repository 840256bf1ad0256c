using System.Net.Sockets;
using Microsoft.Extensions.Logging.Abstractions;
using Nbd.Protocol;
using Nbd.Tests.Devices;

namespace Nbd.Tests.Review;

/// <summary>
/// Review 2 of SocketAcceptor (src/Nbd/Transport/SocketAcceptor.cs) as NbdServer.ServeAsync uses it. ServeAsync's
/// contract (src/Nbd/Server/NbdServer.cs: "Accepts connections until cancellationToken is cancelled or the server
/// stops. Cancelling stops accepting only") is per call: the token ends that call's accepting. But AcceptLoop registers
/// listener.StopAccepting on the token, and SocketAcceptor.Stop sets a _stopped flag that nothing ever clears, on the
/// listener's one acceptor: cancelling one ServeAsync stops the listener for good. A later ServeAsync on the same
/// listener returns a completed task at once (Accept returns null) while clients queue in the backlog unanswered, and
/// another ServeAsync running on it (a second server, or a second call) stops with the first. With the runtime's
/// AcceptAsync before SocketAcceptor, the token cancelled only that call's accept. Right: a cancelled ServeAsync leaves
/// the listener usable (stop per call, or a stop that only StopAsync/Dispose make final).
/// </summary>
public sealed class Review2AcceptorTests : IDisposable
{
    private readonly string _directory = Path.Combine(Path.GetTempPath(), "nbd-review2-" + Guid.NewGuid().ToString("N")[..12]);

    public Review2AcceptorTests() => Directory.CreateDirectory(_directory);

    public void Dispose() => Directory.Delete(_directory, recursive: true);

    [Fact]
    public async Task A_listener_whose_ServeAsync_was_cancelled_can_be_served_again()
    {
        string socketPath = Path.Combine(_directory, "nbd.sock");
        await using var server = new NbdServer(new NbdServerOptions(), NullLoggerFactory.Instance);
        server.AddExport(new NbdExport("mem", "review", new MemoryBlockDevice(1 << 20)));
        using var listener = NbdListener.BindUnix(socketPath);

        using (var first = new CancellationTokenSource())
        {
            Task serving = server.ServeAsync(listener, first.Token);
            Assert.Equal(ServerGreeting.Length, await GreetingBytesAsync(socketPath));
            await first.CancelAsync();
            await serving.WaitAsync(TimeSpan.FromSeconds(10));
        }

        using var second = new CancellationTokenSource();
        Task again = server.ServeAsync(listener, second.Token);
        try
        {
            int read = await GreetingBytesAsync(socketPath);
            Assert.True(read == ServerGreeting.Length,
                $"after a cancelled ServeAsync, a new ServeAsync on the same listener is {again.Status} and the client got {read} of the greeting's {ServerGreeting.Length} bytes in 30 s");
        }
        finally
        {
            await second.CancelAsync();
            await server.StopAsync(TimeSpan.FromSeconds(1));
        }
    }

    [Fact]
    public async Task Cancelling_one_ServeAsync_does_not_stop_another_serving_the_same_listener()
    {
        string socketPath = Path.Combine(_directory, "nbd.sock");
        await using var server = new NbdServer(new NbdServerOptions(), NullLoggerFactory.Instance);
        server.AddExport(new NbdExport("mem", "review", new MemoryBlockDevice(1 << 20)));
        using var listener = NbdListener.BindUnix(socketPath);
        using var first = new CancellationTokenSource();
        using var second = new CancellationTokenSource();
        Task servingFirst = server.ServeAsync(listener, first.Token);
        Task servingSecond = server.ServeAsync(listener, second.Token);
        try
        {
            Assert.Equal(ServerGreeting.Length, await GreetingBytesAsync(socketPath));
            await first.CancelAsync();
            await servingFirst.WaitAsync(TimeSpan.FromSeconds(10));

            int read = await GreetingBytesAsync(socketPath);
            Assert.True(read == ServerGreeting.Length,
                $"with the first ServeAsync cancelled, the second (not cancelled) is {servingSecond.Status} and the client got {read} of the greeting's {ServerGreeting.Length} bytes in 30 s");
        }
        finally
        {
            await second.CancelAsync();
            await server.StopAsync(TimeSpan.FromSeconds(1));
        }
    }

    /// <summary>
    /// Coverage (passes): a listener disposed while its accept thread waits in poll(2), with no cancellation and no
    /// StopAsync first. NbdListener.Dispose stops the acceptor and waits for the accept in progress before it closes the
    /// descriptor (SocketAcceptor.Dispose): Dispose returns, ServeAsync ends without a fault, the socket file is gone,
    /// and a client after that is refused rather than left queued on a listener nobody accepts on.
    /// </summary>
    [Fact]
    public async Task A_listener_disposed_while_its_accept_thread_waits_ends_ServeAsync()
    {
        string socketPath = Path.Combine(_directory, "nbd.sock");
        await using var server = new NbdServer(new NbdServerOptions(), NullLoggerFactory.Instance);
        server.AddExport(new NbdExport("mem", "review", new MemoryBlockDevice(1 << 20)));
        var listener = NbdListener.BindUnix(socketPath);
        using var cancel = new CancellationTokenSource();
        Task serving = server.ServeAsync(listener, cancel.Token);
        Assert.Equal(ServerGreeting.Length, await GreetingBytesAsync(socketPath)); // the accept thread is in its loop

        await Task.Run(listener.Dispose).WaitAsync(TimeSpan.FromSeconds(10));
        await serving.WaitAsync(TimeSpan.FromSeconds(10));
        Assert.Equal(TaskStatus.RanToCompletion, serving.Status);
        Assert.False(File.Exists(socketPath));
        using var late = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        Assert.ThrowsAny<SocketException>(() => late.Connect(new UnixDomainSocketEndPoint(socketPath)));
        await server.StopAsync(TimeSpan.FromSeconds(1));
    }

    /// <summary>Connects and reads the server's greeting for up to 30 s; returns the bytes read.</summary>
    internal static async Task<int> GreetingBytesAsync(string socketPath)
    {
        using var client = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        await client.ConnectAsync(new UnixDomainSocketEndPoint(socketPath));
        byte[] greeting = new byte[ServerGreeting.Length];
        int read = 0;
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        try
        {
            while (read < greeting.Length)
            {
                int n = await client.ReceiveAsync(greeting.AsMemory(read), SocketFlags.None, timeout.Token);
                if (n == 0)
                {
                    break;
                }

                read += n;
            }
        }
        catch (OperationCanceledException)
        {
        }

        return read;
    }
}
