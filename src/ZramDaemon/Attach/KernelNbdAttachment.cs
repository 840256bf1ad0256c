using System.Globalization;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using ZramDaemon.Native;

namespace ZramDaemon.Attach;

/// <summary>
/// An NBD export bound to a kernel /dev/nbdX without nbd-client, the way qemu-nbd -c and rbd-nbd do it: the
/// handshake runs in userspace (<see cref="NbdClientHandshake"/>), then the connected socket goes to the kernel
/// through the nbd generic netlink family, or through the ioctl interface when the kernel has no such family.
/// <see cref="AttachServed"/> is the daemon's form: a socketpair whose other end the daemon serves itself.
/// Block size is 4096, the size of a zramd slot, so the kernel never sends sub-slot I/O.
/// </summary>
public sealed class KernelNbdAttachment : IDisposable
{
    public const int BlockSize = 4096;

    private readonly NbdIoctl? _ioctl;
    private readonly Socket? _socket;
    private readonly Lock _detachLock = new();
    private bool _detached;

    // What /sys/block/nbdN/pid said right after the netlink connect (the connecting thread's id): a device that says
    // otherwise at detach was detached and bound again since, by someone else.
    private readonly string? _connector;

    /// <summary>Internal for tests: an attachment of a device that is not there, to see its detach fail.</summary>
    internal KernelNbdAttachment(int index, NbdAttachMethod method, NbdExportInfo export, NbdIoctl? ioctl, Socket? socket)
    {
        Index = index;
        Method = method;
        Export = export;
        _ioctl = ioctl;
        _socket = socket;
        _connector = method == NbdAttachMethod.Netlink ? ConnectorOf(index) : null;
    }

    public int Index { get; }

    public string DevicePath => DevicePathOf(Index);

    public NbdAttachMethod Method { get; }

    public NbdExportInfo Export { get; }

    /// <summary>The server side's task for <see cref="AttachServed"/> (completes when the kernel disconnects).</summary>
    public Task? Serving { get; private set; }

    /// <summary>Blocks until the kernel lets go of the device: NBD_DO_IT returned (ioctl), or the served
    /// connection ended (<see cref="AttachServed"/>). Returns the errno NBD_DO_IT ended with (0: clean).
    /// A netlink attachment of someone else's server returns at once: the kernel holds it, not this process.</summary>
    public int WaitUntilDetached()
    {
        if (_ioctl is not null)
        {
            return _ioctl.Ended.GetAwaiter().GetResult();
        }

        Serving?.GetAwaiter().GetResult();
        return 0;
    }

    public static string DevicePathOf(int index) => "/dev/nbd" + index.ToString(CultureInfo.InvariantCulture);

    /// <summary>Parses /dev/nbdN (or nbdN) into N, N written as the kernel names its devices: /dev/nbd01 is no
    /// device, not /dev/nbd1 (attach or detach would act on a device the user did not name).</summary>
    public static bool TryParseDevice(string device, out int index)
    {
        ArgumentNullException.ThrowIfNull(device);
        string name = device.StartsWith("/dev/", StringComparison.Ordinal) ? device[5..] : device;
        index = -1;
        return name.StartsWith("nbd", StringComparison.Ordinal) && name.Length > 3 && (name[3] != '0' || name.Length == 4)
            && int.TryParse(name.AsSpan(3), NumberStyles.None, CultureInfo.InvariantCulture, out index);
    }

    /// <summary>Negotiates <paramref name="exportName"/> on <paramref name="connected"/> (a fresh connection to
    /// an NBD server) and binds it to <paramref name="device"/> (/dev/nbdN), or to a free device when null.
    /// Takes ownership of the socket.</summary>
    /// <param name="method">null: netlink, falling back to ioctl when the kernel has no nbd netlink family.</param>
    /// <param name="backend">The device's backend identifier (netlink only; see <see cref="TryDisconnectStale"/>).</param>
    public static KernelNbdAttachment Attach(Socket connected, string exportName, string? device, NbdAttachMethod? method = null, string? backend = null)
    {
        ArgumentNullException.ThrowIfNull(connected);
        int? index = null;
        if (device is not null)
        {
            if (!TryParseDevice(device, out int i))
            {
                connected.Dispose();
                throw new NbdAttachException($"'{device}' is not an nbd device: use /dev/nbdN");
            }

            index = i;
        }

        try
        {
            connected.Blocking = true;
            NbdExportInfo export = NbdClientHandshake.Negotiate(connected, exportName);
            if (export.Size % BlockSize != 0)
            {
                throw new NbdAttachException($"export '{exportName}' is {export.Size} bytes, not a multiple of {BlockSize}");
            }

            int fd = (int)connected.Handle;
            if (method != NbdAttachMethod.Ioctl)
            {
                try
                {
                    using NbdNetlink netlink = NbdNetlink.Open();
                    int connectedIndex = netlink.Connect(index, export, BlockSize, [fd], backend: backend);
                    // The kernel took its own reference to the socket; ours can go.
                    connected.Dispose();
                    return new KernelNbdAttachment(connectedIndex, NbdAttachMethod.Netlink, export, null, null);
                }
                catch (NbdAttachException e) when (method is null && e.Errno == Interop.Libc.ENoEnt)
                {
                    // No nbd netlink family on this kernel: use the ioctls below.
                }
            }

            int target = index ?? FindFreeDevice();
            NbdIoctl ioctl = NbdIoctl.Start(DevicePathOf(target), fd, export, BlockSize);
            return new KernelNbdAttachment(target, NbdAttachMethod.Ioctl, export, ioctl, connected);
        }
        catch
        {
            connected.Dispose();
            throw;
        }
    }

    /// <summary>
    /// The daemon's attach: a socketpair; <paramref name="serve"/> serves one end (e.g. with the NBD server's
    /// ServeConnectionAsync, simple replies only, since the kernel cannot read structured ones) and the other end
    /// is negotiated and bound to the kernel by <see cref="Attach"/>.
    /// </summary>
    public static KernelNbdAttachment AttachServed(Func<Socket, Task> serve, string exportName, string? device, NbdAttachMethod? method = null)
    {
        ArgumentNullException.ThrowIfNull(serve);
        Span<int> fds = stackalloc int[2];
        if (Interop.Libc.SocketPair(Interop.Libc.AfUnix, Interop.Libc.SockStream | Interop.Libc.SockCloexec, 0, fds) != 0)
        {
            throw new NbdAttachException("socketpair failed", Marshal.GetLastPInvokeError());
        }

        var kernelEnd = new Socket(new SafeSocketHandle(fds[0], ownsHandle: true));
        var serverEnd = new Socket(new SafeSocketHandle(fds[1], ownsHandle: true));
        Task serving = Task.Run(() => serve(serverEnd));
        // On failure Attach closes the kernel end, so the server sees end-of-file and its task ends.
        KernelNbdAttachment attachment = Attach(kernelEnd, exportName, device, method, OwnBackend(Environment.ProcessId));
        attachment.Serving = serving;
        return attachment;
    }

    /// <summary>Disconnects the device whoever attached it: netlink NBD_CMD_DISCONNECT, or NBD_DISCONNECT on
    /// the device when the kernel has no netlink family. Refused while the device is in use (active swap, mounted):
    /// its pages would be lost, as zram's reset refuses an open device.</summary>
    public static void Detach(string device)
    {
        ArgumentNullException.ThrowIfNull(device);
        if (!TryParseDevice(device, out int index))
        {
            throw new NbdAttachException($"'{device}' is not an nbd device: use /dev/nbdN");
        }

        // Held across the disconnect, so that nobody mounts or swaps on it in between.
        int claim = ClaimUnused(DevicePathOf(index));
        try
        {
            try
            {
                using NbdNetlink netlink = NbdNetlink.Open();
                netlink.Disconnect(index);
            }
            catch (NbdAttachException e) when (e.Errno == Interop.Libc.ENoEnt)
            {
                NbdIoctl.DisconnectDevice(DevicePathOf(index));
            }
        }
        finally
        {
            if (claim >= 0)
            {
                Interop.Libc.Close(claim);
            }
        }
    }

    /// <summary>
    /// An exclusive open of the device (open(2): O_EXCL on a block device fails with EBUSY while the kernel holds it,
    /// which swapon and mount do), or -1 when it cannot be opened for another reason (no such node, not connected):
    /// the disconnect then says what is wrong. Throws when the device is in use.
    /// </summary>
    private static int ClaimUnused(string devicePath)
    {
        int fd = Interop.Libc.Open(devicePath, Interop.Libc.ORdOnly | Interop.Libc.OExcl | Interop.Libc.OCloexec);
        if (fd < 0 && Marshal.GetLastPInvokeError() == Interop.Libc.EBusy)
        {
            throw new NbdAttachException($"{devicePath} is in use (active swap, mounted, or held by another device): swapoff or umount it first; disconnecting it would lose its data");
        }

        return fd;
    }

    /// <summary>Detaches this attachment (idempotent; after a failure, tried again). Whoever still has the device open sees I/O errors, so
    /// swapoff and umount come first (the systemd units order it so).</summary>
    public void Dispose()
    {
        // Detached only once the detach succeeded, so a failed one (NbdNetlink.Open or Disconnect threw) is tried
        // again by the next Dispose; the lock makes a concurrent Dispose wait for the one under way.
        lock (_detachLock)
        {
            if (_detached)
            {
                return;
            }

            if (_ioctl is not null)
            {
                _ioctl.Dispose();
                _socket?.Dispose();
            }
            else if (_connector is null || ConnectorOf(Index) == _connector)
            {
                using NbdNetlink netlink = NbdNetlink.Open();
                netlink.Disconnect(Index);
            }

            // Otherwise detached already (zramd detach), and perhaps bound to another server since: not ours to cut.
            _detached = true;
        }
    }

    /// <summary>
    /// After a daemon that attached <paramref name="device"/> itself (<see cref="AttachServed"/>) died (SIGKILL, a
    /// crash), the kernel keeps the device configured on its dead connection, and the next daemon's connect gets EBUSY:
    /// disconnects such a device, and only such a one: its backend identifier names a zramd's own attach by a process
    /// that no longer exists (so its connection is certainly dead), and nothing uses it (<see cref="Detach"/> refuses
    /// swap and mounts). A device bound by `zramd attach` or nbd-client, whose binding process exits while the
    /// connection lives, carries no such identifier and is never taken. True if it disconnected one.
    /// </summary>
    public static bool TryDisconnectStale(string device)
    {
        ArgumentNullException.ThrowIfNull(device);
        if (!TryParseDevice(device, out int index) || ReadSysfs(index, "backend") is not { } backend
            || !backend.StartsWith(OwnBackendPrefix, StringComparison.Ordinal)
            || !int.TryParse(backend.AsSpan(OwnBackendPrefix.Length), NumberStyles.None, CultureInfo.InvariantCulture, out int pid)
            || pid == Environment.ProcessId || Directory.Exists($"/proc/{pid.ToString(CultureInfo.InvariantCulture)}"))
        {
            return false;
        }

        try
        {
            Detach(device);
            return true;
        }
        catch (NbdAttachException)
        {
            return false;
        }
    }

    // The backend identifier of a daemon's own attach: the serving process's id, which is gone exactly when the
    // connection it served is.
    private const string OwnBackendPrefix = "zramd-attach:";

    private static string OwnBackend(int pid) => OwnBackendPrefix + pid.ToString(CultureInfo.InvariantCulture);

    /// <summary>/sys/block/nbdN/pid (the thread that connected it), or null while it is not connected.</summary>
    private static string? ConnectorOf(int index) => ReadSysfs(index, "pid");

    /// <summary>/sys/block/nbdN/<paramref name="attribute"/>, trimmed, or null when there is none (not connected; no
    /// backend identifier).</summary>
    private static string? ReadSysfs(int index, string attribute)
    {
        try
        {
            return File.ReadAllText($"/sys/block/nbd{index.ToString(CultureInfo.InvariantCulture)}/{attribute}").Trim();
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return null;
        }
    }

    /// <summary>The first /dev/nbdN with no size (not connected), as the kernel's own choice would be.</summary>
    private static int FindFreeDevice()
    {
        for (int i = 0; Directory.Exists($"/sys/block/nbd{i}"); i++)
        {
            string size = File.ReadAllText($"/sys/block/nbd{i}/size").Trim();
            if (size == "0" && !File.Exists($"/sys/block/nbd{i}/pid"))
            {
                return i;
            }
        }

        throw new NbdAttachException("no free /dev/nbdN (load the nbd module, or raise nbds_max)");
    }
}
