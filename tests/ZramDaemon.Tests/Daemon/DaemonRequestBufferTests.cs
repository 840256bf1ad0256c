using System.Buffers.Binary;
using System.Globalization;
using System.Net.Sockets;
using System.Text;

namespace ZramDaemon.Tests.Daemon;

/// <summary>What a connection's large requests leave behind in the daemon once they are answered.</summary>
public sealed class DaemonRequestBufferTests
{
    private const int Request = 32 << 20; // the advertised maximum payload
    private const int Pipelined = 4; // one per serving thread of a connection

    /// <summary>
    /// Four 32 MiB reads pipelined on one connection (simple replies: the data is written into each thread's buffer),
    /// then the connection idles. Each serving thread used to keep its buffer at the size of its largest request until
    /// the connection closed: 128 MiB held (locked, as root) by an idle connection, 32 GiB with 256 of them.
    /// </summary>
    [Fact]
    public void An_idle_connection_keeps_no_buffer_of_its_large_requests()
    {
        using RunningDaemon daemon = RunningDaemon.Start(["--size", "256M"]);
        using Socket socket = Connect(daemon.Socket);
        long before = ResidentKiB(daemon.Process.Id);

        var header = new byte[28];
        for (int i = 0; i < Pipelined; i++)
        {
            BinaryPrimitives.WriteUInt32BigEndian(header, 0x25609513);
            BinaryPrimitives.WriteUInt16BigEndian(header.AsSpan(6), 0); // NBD_CMD_READ
            BinaryPrimitives.WriteUInt64BigEndian(header.AsSpan(8), (ulong)i);
            BinaryPrimitives.WriteUInt64BigEndian(header.AsSpan(16), (ulong)i * Request);
            BinaryPrimitives.WriteUInt32BigEndian(header.AsSpan(24), Request);
            socket.Send(header);
        }

        var reply = new byte[16];
        var data = new byte[Request];
        for (int i = 0; i < Pipelined; i++)
        {
            ReceiveExact(socket, reply);
            Assert.Equal(0x67446698u, BinaryPrimitives.ReadUInt32BigEndian(reply));
            Assert.Equal(0u, BinaryPrimitives.ReadUInt32BigEndian(reply.AsSpan(4)));
            ReceiveExact(socket, data);
            Assert.True(data.AsSpan().IndexOfAnyExcept((byte)0) < 0, "an unwritten device reads back zeros");
        }

        // The connection stays open and idle: what the daemon holds now is what it keeps.
        Thread.Sleep(200);
        long grown = ResidentKiB(daemon.Process.Id) - before;
        Assert.True(grown < (Request >> 10) / 2, $"the daemon holds {grown >> 10} MiB more after {Pipelined} reads of {Request >> 20} MiB on an idle connection");
    }

    private static long ResidentKiB(int pid)
    {
        string line = File.ReadLines($"/proc/{pid}/status").First(l => l.StartsWith("VmRSS:", StringComparison.Ordinal));
        return long.Parse(line["VmRSS:".Length..].Trim().Split(' ')[0], CultureInfo.InvariantCulture);
    }

    /// <summary>Fixed newstyle handshake with NBD_OPT_EXPORT_NAME (no zeroes): simple replies only.</summary>
    private static Socket Connect(string path)
    {
        var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        socket.Connect(new UnixDomainSocketEndPoint(path));
        ReceiveExact(socket, new byte[18]);
        byte[] name = Encoding.ASCII.GetBytes("zram0");
        byte[] hello = new byte[20 + name.Length];
        BinaryPrimitives.WriteUInt32BigEndian(hello, 3); // FIXED_NEWSTYLE | NO_ZEROES
        BinaryPrimitives.WriteUInt64BigEndian(hello.AsSpan(4), 0x49484156454F5054UL); // IHAVEOPT
        BinaryPrimitives.WriteUInt32BigEndian(hello.AsSpan(12), 1); // NBD_OPT_EXPORT_NAME
        BinaryPrimitives.WriteUInt32BigEndian(hello.AsSpan(16), (uint)name.Length);
        name.CopyTo(hello, 20);
        socket.Send(hello);
        ReceiveExact(socket, new byte[10]); // size and transmission flags
        return socket;
    }

    private static void ReceiveExact(Socket socket, byte[] buffer)
    {
        for (int at = 0; at < buffer.Length;)
        {
            int n = socket.Receive(buffer, at, buffer.Length - at, SocketFlags.None);
            Assert.True(n > 0, "zramd closed the connection");
            at += n;
        }
    }
}
