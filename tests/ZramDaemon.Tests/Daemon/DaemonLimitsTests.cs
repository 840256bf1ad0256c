using System.Diagnostics;
using System.Net.Sockets;
using Nbd.Devices;
using Nbd.Protocol;
using ZramDaemon.Tests.Faults;

namespace ZramDaemon.Tests.Daemon;

/// <summary>
/// Each NBD limit set in zramd.conf's [zramd] section reaches the real daemon's server and is enforced over
/// its real Unix socket. Every case uses a value far from the default, so that a limit that was not passed
/// through (the default in force) fails the test.
/// </summary>
public sealed class DaemonLimitsTests
{
    private const int MiB = 1 << 20;

    private static RunningDaemon StartWith(string daemonSection)
    {
        return RunningDaemon.StartWithConfig($"[zramd]\n{daemonSection}\nlock-memory = no\n[zram0]\nzram-size = 64\n");
    }

    /// <summary>Connects and reads the server's greeting: true if it came, false if the server closed first.</summary>
    private static async Task<(WireClient Client, bool Greeted)> ConnectAsync(RunningDaemon daemon)
    {
        WireClient client = await WireClient.ConnectAsync(daemon.Socket);
        try
        {
            await client.ReceiveExactAsync(ServerGreeting.Length).WaitAsync(TimeSpan.FromSeconds(20));
            return (client, true);
        }
        catch (Exception e) when (e is EndOfStreamException or SocketException)
        {
            return (client, false);
        }
    }

    [Fact]
    public async Task Max_connections_from_the_config_closes_the_one_past_it_and_frees_its_place_on_close()
    {
        using RunningDaemon daemon = StartWith("max-connections = 2");
        (WireClient first, bool firstGreeted) = await ConnectAsync(daemon);
        (WireClient second, bool secondGreeted) = await ConnectAsync(daemon);
        using WireClient keep = second;
        Assert.True(firstGreeted && secondGreeted);

        (WireClient third, bool thirdGreeted) = await ConnectAsync(daemon);
        third.Dispose();
        Assert.False(thirdGreeted, "a third connection was served with max-connections = 2");

        // Closing one makes room again (the server notices the close asynchronously: retry for a while).
        first.Dispose();
        var clock = Stopwatch.StartNew();
        bool served = false;
        while (!served && clock.Elapsed < TimeSpan.FromSeconds(20))
        {
            (WireClient next, served) = await ConnectAsync(daemon);
            next.Dispose();
            await Task.Delay(served ? 0 : 100);
        }

        Assert.True(served, "no room after a connection closed");
        Assert.Contains("max-connections = 2", daemon.Process.StandardError, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Max_payload_from_the_config_refuses_larger_reads_and_writes_with_EINVAL()
    {
        using RunningDaemon daemon = StartWith("max-payload = 64K");
        using WireClient client = await WireClient.OpenAsync(daemon.Socket, "zram0");
        Assert.Equal(NbdError.None, await client.WriteAsync(0, new byte[64 * 1024]));
        Assert.Equal(64 * 1024, (await client.ReadAsync(0, 64 * 1024)).Length);

        // 128 KiB is far below the 32 MiB default: refused only because of the configured limit.
        Assert.Equal(NbdError.Invalid, await client.WriteAsync(0, new byte[128 * 1024]));
        var e = await Assert.ThrowsAsync<IOException>(() => client.ReadAsync(0, 128 * 1024));
        Assert.Contains(nameof(NbdError.Invalid), e.Message, StringComparison.Ordinal);

        // The connection goes on.
        Assert.Equal(4096, (await client.ReadAsync(0, 4096)).Length);
    }

    [Fact]
    public async Task Handshake_timeout_from_the_config_closes_a_client_that_stalls_in_the_handshake()
    {
        using RunningDaemon daemon = StartWith("handshake-timeout = 1s");

        // The server's second starts at accept, after this clock: reading the greeting on a loaded machine may
        // take most of that second, so the clock cannot start after it.
        var clock = Stopwatch.StartNew();
        (WireClient client, bool greeted) = await ConnectAsync(daemon);
        using WireClient stalled = client;
        Assert.True(greeted);

        // Send nothing: the server must close within about a second, far before its 30 s default.
        int n = await client.Socket.ReceiveAsync(new byte[16], SocketFlags.None).WaitAsync(TimeSpan.FromSeconds(15));
        Assert.Equal(0, n);
        Assert.InRange(clock.Elapsed, TimeSpan.FromSeconds(0.95), TimeSpan.FromSeconds(15));
    }

    [Fact]
    public async Task Max_in_flight_from_the_config_stops_reading_a_connection_whose_replies_are_not_read()
    {
        const int limit = 4;
        using RunningDaemon daemon = StartWith($"max-in-flight = {limit}");
        using WireClient client = await WireClient.OpenAsync(daemon.Socket, "zram0");

        // A 16 MiB READ whose reply we never read: the server's writer blocks on it, so no request slot is
        // released from here on. Then 1 MiB WRITEs: the server takes each payload into a free slot until none
        // is left, then stops reading, and our sends stall once the socket buffer is full too.
        await client.SendAsync(WireClient.Header(CommandType.Read, 1, 0, 16 * MiB));
        await Task.Delay(500);
        byte[] write = [.. WireClient.Header(CommandType.Write, 2, 0, MiB), .. new byte[MiB]];
        Socket socket = client.Socket;
        socket.Blocking = false;
        long sent = 0;
        var clock = Stopwatch.StartNew();
        while (true)
        {
            int offset = (int)(sent % write.Length);
            int n = socket.Send(write, offset, write.Length - offset, SocketFlags.None, out SocketError error);
            if (n > 0)
            {
                sent += n;
                continue;
            }

            Assert.Equal(SocketError.WouldBlock, error);
            // No room for 3 s: the server has stopped reading. Before its free slots can have been filled, a stall
            // is only the daemon waiting for a CPU on a loaded machine: keep sending, for a minute at most.
            if (!socket.Poll(TimeSpan.FromSeconds(3), SelectMode.SelectWrite)
                && (sent >= (limit - 1) * (long)MiB || clock.Elapsed > TimeSpan.FromMinutes(1)))
            {
                break;
            }

            Assert.True(sent < 256L * MiB, "the server never stopped reading");
        }

        // limit - 1 slots took a WRITE's payload; the socket buffer holds at most a few hundred KiB more. With the
        // default of 64 in flight, 63 MiB would have gone through.
        Assert.InRange(sent, (limit - 1) * (long)MiB, (limit + 2) * (long)MiB);
    }

    /// <summary>
    /// threads-per-connection sets how many threads serve each connection (named nbd-ID, nbd-ID.1, ...); the connection
    /// is served by them. 1 and 7 are both away from the default of 4, which gives way to a lower max-in-flight (more
    /// than max-in-flight, set, is refused: ConfigurationLoaderTests), and the start's log says the number that serves.
    /// </summary>
    [Theory]
    [InlineData(7, 64, 7)]
    [InlineData(1, 64, 1)]
    [InlineData(null, 3, 3)]
    public async Task Threads_per_connection_from_the_config_is_how_many_threads_serve_a_connection(int? threads, int maxInFlight, int expected)
    {
        using RunningDaemon daemon = StartWith((threads is { } set ? $"threads-per-connection = {set}\n" : string.Empty) + $"max-in-flight = {maxInFlight}");
        using WireClient client = await WireClient.OpenAsync(daemon.Socket, "zram0");
        byte[] data = new byte[64 * 1024];
        Random.Shared.NextBytes(data);
        Assert.Equal(NbdError.None, await client.WriteAsync(4096, data));
        Assert.Equal(data, await client.ReadAsync(4096, data.Length));

        // The threads start once GO is answered; after a while there must be exactly that many, and no more later.
        int Count() => ProcThreads.StatFields(daemon.Process.Id, "nbd-").Count;
        var clock = Stopwatch.StartNew();
        while (Count() < expected && clock.Elapsed < TimeSpan.FromSeconds(20))
        {
            await Task.Delay(50);
        }

        await Task.Delay(300);
        Assert.Equal(expected, Count());
        Assert.Contains($"threads-per-connection = {expected},", daemon.Process.StandardError, StringComparison.Ordinal);
    }
}
