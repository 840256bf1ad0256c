using System.Runtime.InteropServices;
using ZramDaemon.Native;

namespace ZramDaemon.Attach;

/// <summary>
/// The nbd driver's older ioctl interface (include/uapi/linux/nbd.h), for kernels without the netlink family:
/// NBD_SET_SOCK, NBD_SET_BLKSIZE, NBD_SET_SIZE_BLOCKS, NBD_SET_FLAGS, then NBD_DO_IT, which blocks for as long
/// as the device is connected. The whole sequence runs on one dedicated thread, the way nbd-client and
/// qemu-nbd -c do it; NBD_DISCONNECT from any thread ends NBD_DO_IT.
/// </summary>
public sealed class NbdIoctl : IDisposable
{
    private const nuint NbdSetSock = 0xab00;
    private const nuint NbdSetBlockSize = 0xab01;
    private const nuint NbdDoIt = 0xab03;
    private const nuint NbdClearSock = 0xab04;
    private const nuint NbdClearQueue = 0xab05;
    private const nuint NbdSetSizeBlocks = 0xab07;
    private const nuint NbdDisconnect = 0xab08;
    private const nuint NbdSetFlags = 0xab0a;

    private readonly int _deviceFd;
    private readonly Thread _thread;
    private readonly TaskCompletionSource _configured = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly TaskCompletionSource<int> _ended = new(TaskCreationOptions.RunContinuationsAsynchronously);

    private NbdIoctl(string devicePath, int deviceFd, int socketFd, NbdExportInfo export, int blockSize)
    {
        DevicePath = devicePath;
        _deviceFd = deviceFd;
        _thread = new Thread(() => Run(socketFd, export, blockSize))
        {
            IsBackground = true,
            Name = "nbd-do-it " + devicePath,
        };
    }

    public string DevicePath { get; }

    /// <summary>Completes when NBD_DO_IT returns (the device was disconnected), with its errno (0: clean).</summary>
    public Task<int> Ended => _ended.Task;

    /// <summary>Configures <paramref name="devicePath"/> with the socket and starts NBD_DO_IT on its own thread;
    /// returns once everything before NBD_DO_IT succeeded.</summary>
    public static NbdIoctl Start(string devicePath, int socketFd, NbdExportInfo export, int blockSize)
    {
        int fd = Interop.Libc.Open(devicePath, Interop.Libc.ORdWr | Interop.Libc.OCloexec);
        if (fd < 0)
        {
            throw new NbdAttachException($"cannot open {devicePath}", Marshal.GetLastPInvokeError());
        }

        var ioctl = new NbdIoctl(devicePath, fd, socketFd, export, blockSize);
        ioctl._thread.Start();
        try
        {
            ioctl._configured.Task.GetAwaiter().GetResult();
        }
        catch
        {
            ioctl._thread.Join();
            Interop.Libc.Close(fd);
            throw;
        }

        return ioctl;
    }

    /// <summary>NBD_DISCONNECT, then waits for NBD_DO_IT to return.</summary>
    public void Disconnect(TimeSpan wait)
    {
        if (!_ended.Task.IsCompleted)
        {
            Interop.Libc.Ioctl(_deviceFd, NbdDisconnect, 0);
            _ended.Task.Wait(wait);
        }
    }

    /// <summary>NBD_DISCONNECT on a device attached by another process (the ioctl form of detach).</summary>
    public static void DisconnectDevice(string devicePath)
    {
        int fd = Interop.Libc.Open(devicePath, Interop.Libc.ORdWr | Interop.Libc.OCloexec);
        if (fd < 0)
        {
            throw new NbdAttachException($"cannot open {devicePath}", Marshal.GetLastPInvokeError());
        }

        try
        {
            if (Interop.Libc.Ioctl(fd, NbdDisconnect, 0) < 0)
            {
                throw new NbdAttachException($"NBD_DISCONNECT on {devicePath} failed", Marshal.GetLastPInvokeError());
            }
        }
        finally
        {
            Interop.Libc.Close(fd);
        }
    }

    public void Dispose()
    {
        Disconnect(TimeSpan.FromSeconds(30));
        if (_ended.Task.IsCompleted)
        {
            Interop.Libc.Close(_deviceFd);
        }
    }

    private void Run(int socketFd, NbdExportInfo export, int blockSize)
    {
        bool socketSet = false;
        try
        {
            Check(Interop.Libc.Ioctl(_deviceFd, NbdSetSock, (nuint)socketFd), "NBD_SET_SOCK");
            socketSet = true;
            Check(Interop.Libc.Ioctl(_deviceFd, NbdSetBlockSize, (nuint)blockSize), "NBD_SET_BLKSIZE");
            Check(Interop.Libc.Ioctl(_deviceFd, NbdSetSizeBlocks, (nuint)(export.Size / blockSize)), "NBD_SET_SIZE_BLOCKS");
            Check(Interop.Libc.Ioctl(_deviceFd, NbdSetFlags, export.TransmissionFlags), "NBD_SET_FLAGS");
        }
        catch (NbdAttachException e)
        {
            // Only our own socket is taken back. A refused NBD_SET_SOCK means the device is someone else's (EBUSY:
            // another task set it up; EINVAL: netlink-bound), and NBD_CLEAR_SOCK would disconnect theirs: the kernel
            // performs it on whatever the device is connected to, swap included.
            if (socketSet)
            {
                Interop.Libc.Ioctl(_deviceFd, NbdClearSock, 0);
            }

            _configured.SetException(e);
            _ended.SetResult(e.Errno);
            return;
        }

        _configured.SetResult();
        int result = Interop.Libc.Ioctl(_deviceFd, NbdDoIt, 0);
        int errno = result < 0 ? Marshal.GetLastPInvokeError() : 0;
        Interop.Libc.Ioctl(_deviceFd, NbdClearQueue, 0);
        Interop.Libc.Ioctl(_deviceFd, NbdClearSock, 0);
        _ended.SetResult(errno);
    }

    private void Check(int result, string what)
    {
        if (result < 0)
        {
            throw new NbdAttachException($"{what} on {DevicePath} failed", Marshal.GetLastPInvokeError());
        }
    }
}
