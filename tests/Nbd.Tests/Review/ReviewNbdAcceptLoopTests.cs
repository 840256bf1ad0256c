using System.Net.Sockets;
using Microsoft.Extensions.Logging.Abstractions;
using Nbd.Protocol;
using Nbd.Tests.Devices;

namespace Nbd.Tests.Review;

/// <summary>
/// Review: NbdServer.ServeAsync (src/Nbd/Server/NbdServer.cs, the accept loop) catches only OperationCanceledException,
/// ObjectDisposedException and SocketException around listener.AcceptAsync. A client whose socket is bound to an
/// address that fills sun_path (here an abstract name of 107 bytes with its leading NUL) makes .NET's Socket.AcceptAsync
/// throw an ArgumentException ("Destination is too short", or ArgumentOutOfRangeException) while it builds the peer's
/// address; when that connection is already queued as the
/// accept starts, the exception reaches the loop, which ends: the task faults and the listener accepts no one after.
/// (When the accept is pending instead, the same failure is thrown on a thread-pool thread and kills the process:
/// ZramDaemon.Tests' ReviewNbdAcceptTests shows that against a real zramd.) One connection must not end the
/// service for every other client (doc/proto.md: "A party MUST NOT initiate a hard disconnect save where set out
/// in this section"; here every later client is refused).
/// The odd client connects before ServeAsync starts, so the first accept finds it queued and fails synchronously:
/// deterministic, and no accept is left pending to fail on the thread pool and take the test host down.
/// </summary>
public sealed class ReviewNbdAcceptLoopTests
{
    [Fact]
    public async Task A_client_bound_to_a_full_length_abstract_address_does_not_end_the_accept_loop()
    {
        string directory = Path.Combine(Path.GetTempPath(), "nbd-review-" + Guid.NewGuid().ToString("N")[..12]);
        Directory.CreateDirectory(directory);
        string socketPath = Path.Combine(directory, "nbd.sock");
        var server = new NbdServer(new NbdServerOptions(), NullLoggerFactory.Instance);
        server.AddExport(new NbdExport("mem", "review", new MemoryBlockDevice(1 << 20)));
        var listener = NbdListener.BindUnix(socketPath);
        using var cancel = new CancellationTokenSource();
        using var odd = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        odd.Bind(new UnixDomainSocketEndPoint("\0" + new string('r', 106)));
        odd.Connect(new UnixDomainSocketEndPoint(socketPath)); // queued in the backlog: nothing accepts yet
        Task serving = server.ServeAsync(listener, cancel.Token);
        try
        {
            int read = await Review2AcceptorTests.GreetingBytesAsync(socketPath);
            Assert.True(read == ServerGreeting.Length,
                $"the client after the odd one got {read} of the greeting's {ServerGreeting.Length} bytes in 30 s; the accept loop is {serving.Status}: "
                + $"{serving.Exception?.InnerException?.GetType().Name} {serving.Exception?.InnerException?.Message}");
        }
        finally
        {
            await cancel.CancelAsync();
            await server.StopAsync(TimeSpan.FromSeconds(1));
            try
            {
                await serving;
            }
            catch (Exception)
            {
                // What ended the loop is reported above.
            }

            listener.Dispose();
            await server.DisposeAsync();
            Directory.Delete(directory, recursive: true);
        }
    }
}
