using System.Buffers.Binary;
using System.Net.Security;
using System.Net.Sockets;
using System.Text;
using Xunit.Abstractions;
using ZramDaemon.Tests.Configuration;

namespace ZramDaemon.Tests.Daemon;

/// <summary>
/// A daemon that runs for months must come back to the same open files and threads however its clients behave.
/// Each behaviour is repeated against one real zramd (tls-mode = optional, max-connections = 8): 20 times to warm
/// up (the runtime opens an assembly or starts a pool thread on first use), then 150 times; the descriptors and threads
/// of the daemon must settle back near the warm-up count: within 4 descriptors (the runtime maps an assembly it loads
/// late twice, as tier-1 code of the control verbs loads System.IO.Pipelines after the warm-up) and 8 threads (the
/// thread pool's own). It passes on the code it was written against (fds 124 -> 126, threads 16 -> 19).
/// </summary>
public sealed class LongLifeLeakTests(ITestOutputHelper output)
{
    private const int Repetitions = 150;
    private const int WarmUp = 20;
    private const int MaxConnections = 8;

    [Fact]
    public void Descriptors_and_threads_come_back_after_hundreds_of_misbehaving_clients()
    {
        using RunningDaemon daemon = RunningDaemon.StartWithConfig(dir =>
        {
            (string cert, string key) = TestCertificate.Write(dir);
            return $"[zramd]\ntls-mode = optional\ntls-certificate = {cert}\ntls-key = {key}\nmax-connections = {MaxConnections}\nlog-level = debug\n[zram0]\nzram-size = 16M\n";
        });
        int pid = daemon.Process.Id;
        var behaviours = new (string Name, Action Run)[]
        {
            ("clean connect, DISC", () => Clean(daemon.Socket)),
            ("drop mid-handshake", () => { using Socket s = Connect(daemon.Socket); ReceiveExact(s, 18); s.Send(new byte[2]); }),
            ("drop mid-WRITE payload", () => DropMidWrite(daemon.Socket)),
            ("32 MiB READ, reply unread", () => UnreadBigRead(daemon.Socket)),
            ("STARTTLS then close", () => { using Socket s = Connect(daemon.Socket); StartTls(s); }),
            ("TLS certificate rejected", () => RejectedTls(daemon.Socket)),
            ("control status/stats/compact", () => { Control(daemon.ControlPath, "status"); Control(daemon.ControlPath, "stats zram0"); Control(daemon.ControlPath, "compact"); }),
        };

        foreach ((_, Action run) in behaviours)
        {
            for (int i = 0; i < WarmUp; i++)
            {
                _ = Tolerant(run);
            }
        }

        Refused(daemon.Socket, 2);
        (int fdsWarm, int threadsWarm) = Settle(pid, int.MaxValue, int.MaxValue, () => IdleCollections(daemon));
        output.WriteLine($"warm: fds {fdsWarm}, threads {threadsWarm}");
        foreach ((string name, Action run) in behaviours)
        {
            int failed = 0;
            for (int i = 0; i < Repetitions; i++)
            {
                failed += Tolerant(run);
            }

            (int fds, int threads) = Settle(pid, fdsWarm + 4, threadsWarm + 8, () => IdleCollections(daemon));
            output.WriteLine($"{name} x{Repetitions} ({failed} ended by an exception): fds {fds}, threads {threads}");
            Assert.True(fds <= fdsWarm + 4, $"{name} x{Repetitions}: open fds {fdsWarm} -> {fds}");
            Assert.True(threads <= threadsWarm + 8, $"{name} x{Repetitions}: threads {threadsWarm} -> {threads}");
        }

        Refused(daemon.Socket, Repetitions);
        (int fdsEnd, int threadsEnd) = Settle(pid, fdsWarm + 4, threadsWarm + 8, () => IdleCollections(daemon));
        output.WriteLine($"refused at max-connections x{Repetitions}: fds {fdsEnd}, threads {threadsEnd}");
        Assert.True(fdsEnd <= fdsWarm + 4, $"refused at max-connections x{Repetitions}: open fds {fdsWarm} -> {fdsEnd}");
        Assert.True(threadsEnd <= threadsWarm + 8, $"refused at max-connections x{Repetitions}: threads {threadsWarm} -> {threadsEnd}");
        Assert.False(daemon.Process.HasExited, daemon.Process.StandardError);
    }

    /// <summary>The counts once they are within bounds, or (for the unbounded warm-up) stop falling; at most 25 s after
    /// the behaviour: on a loaded machine the thread pool adds workers, and retires an idle one only after 20 s, so
    /// counts that merely stopped falling could still be above the bound without any leak (the suite hit it once).
    /// Descriptors that came within their bound only across one of the daemon's idle collections (its debug line,
    /// counted by <paramref name="collections"/>) are a leak all the same: something left its socket to a finalizer,
    /// and under steady churn no such collection runs.</summary>
    private static (int Fds, int Threads) Settle(int pid, int fdBound, int threadBound, Func<int> collections)
    {
        var deadline = DateTime.UtcNow.AddSeconds(25);
        bool bounded = fdBound != int.MaxValue || threadBound != int.MaxValue;
        (int Fds, int Threads) now = Counts(pid);
        int collectedWhenOver = now.Fds > fdBound ? collections() : -1;
        Thread.Sleep(500);
        while (DateTime.UtcNow < deadline)
        {
            Thread.Sleep(500);
            (int Fds, int Threads) next = Counts(pid);
            int collected = collections();
            Assert.False(next.Fds <= fdBound && collectedWhenOver >= 0 && collected > collectedWhenOver,
                $"open fds came down to {next.Fds} (bound {fdBound}) only after an idle collection of the daemon: a descriptor is closed by a finalizer");
            if ((next.Fds <= fdBound && next.Threads <= threadBound) || (!bounded && next == now))
            {
                return next;
            }

            if (next.Fds > fdBound)
            {
                collectedWhenOver = collected;
            }

            now = next;
        }

        return now;
    }

    private static int IdleCollections(RunningDaemon daemon)
        => daemon.Process.StandardError.Split("idle: collected the managed heap").Length - 1;

    private static (int Fds, int Threads) Counts(int pid)
    {
        int fds = Directory.GetFileSystemEntries($"/proc/{pid}/fd").Length;
        string line = File.ReadAllLines($"/proc/{pid}/status").Single(l => l.StartsWith("Threads:", StringComparison.Ordinal));
        return (fds, int.Parse(line["Threads:".Length..].Trim(), System.Globalization.CultureInfo.InvariantCulture));
    }

    /// <summary>A client refused at the limit may also find a slot still held by the previous one's teardown:
    /// what each behaviour gets back does not matter here, only what the daemon keeps.</summary>
    private static int Tolerant(Action run)
    {
        try
        {
            run();
            return 0;
        }
        catch (Exception e) when (e is IOException or SocketException or EndOfStreamException or System.Security.Authentication.AuthenticationException)
        {
            return 1;
        }
    }

    private static Socket Connect(string path)
    {
        var s = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified) { ReceiveTimeout = 10_000, SendTimeout = 10_000 };
        s.Connect(new UnixDomainSocketEndPoint(path));
        return s;
    }

    /// <summary>Exactly <paramref name="count"/> bytes, or EndOfStreamException (the review tests use it too).</summary>
    internal static byte[] ReceiveExact(Socket s, int count)
    {
        byte[] buffer = new byte[count];
        for (int filled = 0; filled < count;)
        {
            int n = s.Receive(buffer, filled, count - filled, SocketFlags.None);
            if (n == 0)
            {
                throw new EndOfStreamException();
            }

            filled += n;
        }

        return buffer;
    }

    private static byte[] Option(uint option, byte[] data)
    {
        byte[] o = new byte[16 + data.Length];
        "IHAVEOPT"u8.CopyTo(o);
        BinaryPrimitives.WriteUInt32BigEndian(o.AsSpan(8), option);
        BinaryPrimitives.WriteUInt32BigEndian(o.AsSpan(12), (uint)data.Length);
        data.CopyTo(o, 16);
        return o;
    }

    /// <summary>Reads option replies up to the final one; its type.</summary>
    private static uint FinalReply(Socket s)
    {
        while (true)
        {
            byte[] header = ReceiveExact(s, 20);
            uint type = BinaryPrimitives.ReadUInt32BigEndian(header.AsSpan(12));
            ReceiveExact(s, (int)BinaryPrimitives.ReadUInt32BigEndian(header.AsSpan(16)));
            if (type == 1 || (type & 0x8000_0000) != 0)
            {
                return type;
            }
        }
    }

    /// <summary>Greeting, client flags (FIXED_NEWSTYLE | NO_ZEROES), NBD_OPT_GO zram0: in transmission.</summary>
    private static Socket Open(string path)
    {
        Socket s = Connect(path);
        try
        {
            ReceiveExact(s, 18);
            s.Send([0, 0, 0, 3]);
            byte[] go = new byte[4 + 5 + 2];
            BinaryPrimitives.WriteUInt32BigEndian(go, 5);
            "zram0"u8.CopyTo(go.AsSpan(4));
            s.Send(Option(7, go));
            if (FinalReply(s) != 1)
            {
                throw new IOException("NBD_OPT_GO refused");
            }

            return s;
        }
        catch
        {
            s.Dispose();
            throw;
        }
    }

    private static byte[] Request(ushort type, ulong handle, ulong offset, uint length)
    {
        byte[] r = new byte[28];
        BinaryPrimitives.WriteUInt32BigEndian(r, 0x25609513);
        BinaryPrimitives.WriteUInt16BigEndian(r.AsSpan(6), type);
        BinaryPrimitives.WriteUInt64BigEndian(r.AsSpan(8), handle);
        BinaryPrimitives.WriteUInt64BigEndian(r.AsSpan(16), offset);
        BinaryPrimitives.WriteUInt32BigEndian(r.AsSpan(24), length);
        return r;
    }

    private static void Clean(string path)
    {
        using Socket s = Open(path);
        s.Send(Request(0, 1, 0, 4096));
        ReceiveExact(s, 16 + 4096);
        s.Send(Request(2, 2, 0, 0));
    }

    private static void DropMidWrite(string path)
    {
        using Socket s = Open(path);
        s.Send(Request(1, 1, 0, 1 << 20));
        s.Send(new byte[512 << 10]);
    }

    private static void UnreadBigRead(string path)
    {
        using Socket s = Open(path);
        s.Send(Request(0, 1, 0, 32 << 20));
        Thread.Sleep(5);
    }

    private static void StartTls(Socket s)
    {
        ReceiveExact(s, 18);
        s.Send([0, 0, 0, 3]);
        s.Send(Option(5, []));
        if (FinalReply(s) != 1)
        {
            throw new IOException("NBD_OPT_STARTTLS refused");
        }
    }

    private static void RejectedTls(string path)
    {
        using Socket s = Connect(path);
        StartTls(s);
        using var ssl = new SslStream(new NetworkStream(s, ownsSocket: false), leaveInnerStreamOpen: false, (_, _, _, _) => false);
        ssl.AuthenticateAsClient("localhost");
    }

    private static void Control(string path, string line)
    {
        using Socket s = Connect(path);
        s.Send(Encoding.UTF8.GetBytes(line + "\n"));
        byte[] buffer = new byte[65536];
        while (s.Receive(buffer) > 0)
        {
        }
    }

    /// <summary>Holds <see cref="MaxConnections"/> sessions, then makes <paramref name="count"/> connections that
    /// the daemon must refuse, then lets the held ones go.</summary>
    private static void Refused(string path, int count)
    {
        var held = new List<Socket>();
        try
        {
            var deadline = DateTime.UtcNow.AddSeconds(10);
            while (held.Count < MaxConnections && DateTime.UtcNow < deadline)
            {
                try
                {
                    held.Add(Open(path));
                }
                catch (Exception e) when (e is IOException or SocketException or EndOfStreamException)
                {
                    Thread.Sleep(50); // a slot still held by an earlier client's teardown
                }
            }

            for (int i = 0; i < count; i++)
            {
                _ = Tolerant(() =>
                {
                    using Socket s = Connect(path);
                    byte[] buffer = new byte[64];
                    while (s.Receive(buffer) > 0)
                    {
                    }
                });
            }
        }
        finally
        {
            foreach (Socket s in held)
            {
                s.Dispose();
            }
        }
    }
}
