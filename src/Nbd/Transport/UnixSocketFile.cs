using System.Buffers.Binary;
using System.Net.Sockets;
using Nbd.Native;

namespace Nbd;

/// <summary>Socket files left behind by a server that did not stop cleanly: the NBD listeners' and the daemon's
/// control socket's alike.</summary>
public static class UnixSocketFile
{
    /// <summary>Deletes <paramref name="path"/> if it is a socket nobody is bound to (a connect is refused). Throws
    /// <see cref="IOException"/> if a live server answers (two servers must not share it; <paramref name="liveServer"/>
    /// names who that would be, "a running zramd"), if the connect fails otherwise (a live server of another socket
    /// type), or if it is another kind of file (we never delete what we did not create: a typo in a path must not cost
    /// a file).</summary>
    public static void RemoveStale(string path, string liveServer = "another server")
    {
        Span<byte> stat = stackalloc byte[256];
        if (Libc.LStat(path, stat) != 0)
        {
            return; // Nothing there (or unreachable: bind will say why).
        }

        uint mode = BinaryPrimitives.ReadUInt32LittleEndian(stat[Libc.StatModeOffset..]);
        if ((mode & Libc.FileTypeMask) != Libc.SocketFileType)
        {
            throw new IOException($"{path} exists and is not a socket: remove it or choose another path");
        }

        using var probe = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        try
        {
            probe.Connect(new UnixDomainSocketEndPoint(path));
        }
        catch (SocketException e) when (e.SocketErrorCode == SocketError.ConnectionRefused)
        {
            // Nobody is bound there, of any socket type: a leftover.
            File.Delete(path);
            return;
        }
        catch (SocketException e)
        {
            if (Libc.LStat(path, stat) != 0)
            {
                return; // Gone meanwhile.
            }

            // A server of another socket type (EPROTOTYPE: journald's /dev/log is a datagram socket), one we may not
            // reach (EACCES), or a busy one: none of them says the file is stale.
            throw new IOException($"{path} is a socket that is not stale ({e.Message}): stop what is bound to it, or choose another path", e);
        }

        throw new IOException($"{path} is in use by {liveServer}: stop it first, or choose another path");
    }
}
