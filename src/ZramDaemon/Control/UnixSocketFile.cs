using System.Buffers.Binary;
using System.Net.Sockets;
using ZramDaemon.Native;

namespace ZramDaemon.Control;

/// <summary>Socket files left behind by a daemon that did not stop cleanly.</summary>
internal static class UnixSocketFile
{
    /// <summary>Deletes <paramref name="path"/> if it is a socket nobody answers on. Throws
    /// <see cref="IOException"/> if a live daemon answers (two daemons must not share it) or if it is another
    /// kind of file (we never delete what we did not create).</summary>
    public static void RemoveStale(string path)
    {
        Span<byte> stat = stackalloc byte[256];
        if (Interop.Libc.LStat(path, stat) != 0)
        {
            return; // Nothing there (or unreachable: bind will say why).
        }

        uint mode = BinaryPrimitives.ReadUInt32LittleEndian(stat[Interop.Libc.StatModeOffset..]);
        if ((mode & Interop.Libc.FileTypeMask) != Interop.Libc.SocketFileType)
        {
            throw new IOException($"{path} exists and is not a socket: remove it or choose another path");
        }

        using var probe = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        try
        {
            probe.Connect(new UnixDomainSocketEndPoint(path));
        }
        catch (SocketException)
        {
            File.Delete(path);
            return;
        }

        throw new IOException($"{path} is in use by a running zramd: stop it first, or choose another path");
    }
}
