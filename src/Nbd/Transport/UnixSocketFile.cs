using System.Net.Sockets;
using System.Runtime.InteropServices;
using Nbd.Native;

namespace Nbd;

/// <summary>
/// The file a listening Unix socket is bound to, the NBD listeners' and the daemon's control socket's alike: bound with
/// bind(2) itself, and deleted at the end only while it is still the file this bind made. Socket.Bind with a
/// UnixDomainSocketEndPoint has the runtime delete the path when the socket is disposed, whatever file is there by
/// then: a zramd whose socket file was removed, and a second zramd bound at the path since, lost the second one's
/// socket when the first stopped (clients of the second got ENOENT while it ran on). Also: the socket files left behind
/// by a server that did not stop cleanly (<see cref="RemoveStale"/>).
/// </summary>
public sealed class UnixSocketFile
{
    private readonly ulong _device;
    private readonly ulong _inode;

    private UnixSocketFile(string path, ulong device, ulong inode)
    {
        Path = path;
        _device = device;
        _inode = inode;
    }

    public string Path { get; }

    /// <summary>Binds <paramref name="socket"/> (a Unix stream socket, not bound yet) to <paramref name="path"/>.</summary>
    /// <exception cref="ArgumentException">The path does not fit in a socket address (107 bytes).</exception>
    /// <exception cref="IOException">bind(2) failed (the path exists, a directory is missing or not writable).</exception>
    public static UnixSocketFile Bind(Socket socket, string path)
    {
        ArgumentNullException.ThrowIfNull(socket);
        ArgumentException.ThrowIfNullOrEmpty(path);
        int length = System.Text.Encoding.UTF8.GetByteCount(path);
        if (length >= Libc.SunPathLength || path.Contains('\0', StringComparison.Ordinal))
        {
            throw new ArgumentException($"{path}: a Unix socket path holds at most {Libc.SunPathLength - 1} bytes and no NUL", nameof(path));
        }

        // struct sockaddr_un: sun_family (native order), then sun_path with its NUL.
        Span<byte> address = stackalloc byte[sizeof(ushort) + Libc.SunPathLength];
        address.Clear();
        MemoryMarshal.Write(address, Libc.AfUnix);
        System.Text.Encoding.UTF8.GetBytes(path, address[sizeof(ushort)..]);
        if (Libc.Bind(socket.SafeHandle, address, (uint)(sizeof(ushort) + length + 1)) != 0)
        {
            throw new IOException($"cannot bind a socket at {path}: {Marshal.GetLastPInvokeErrorMessage()}");
        }

        if (!Libc.TryLStat(path, out _, out ulong device, out ulong inode))
        {
            throw new IOException($"{path} is gone just after bind: {Marshal.GetLastPInvokeErrorMessage()}");
        }

        return new UnixSocketFile(path, device, inode);
    }

    /// <summary>Deletes the file, if the path still names the one <see cref="Bind"/> made (another server's, bound
    /// there since ours was removed, stays). Best effort: a leftover is stale, and the next bind removes it.</summary>
    public void Delete()
    {
        if (!Libc.TryLStat(Path, out _, out ulong device, out ulong inode) || device != _device || inode != _inode)
        {
            return;
        }

        try
        {
            File.Delete(Path);
        }
        catch (IOException)
        {
        }
        catch (UnauthorizedAccessException)
        {
        }
    }

    /// <summary>Deletes <paramref name="path"/> if it is a socket nobody is bound to (a connect is refused). Throws
    /// <see cref="IOException"/> if a live server answers (two servers must not share it; <paramref name="liveServer"/>
    /// names who that would be, "a running zramd"), if the connect fails otherwise (a live server of another socket
    /// type), or if it is another kind of file (we never delete what we did not create: a typo in a path must not cost
    /// a file).</summary>
    public static void RemoveStale(string path, string liveServer = "another server")
    {
        if (!Libc.TryLStat(path, out uint fileType, out _, out _))
        {
            return; // Nothing there (or unreachable: bind will say why).
        }

        if (fileType != Libc.SocketFileType)
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
            if (!Libc.TryLStat(path, out _, out _, out _))
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
