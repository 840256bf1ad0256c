namespace ZramDaemon.Tests.Daemon;

/// <summary>
/// The daemon's exports advertise a minimum block size of 512 to a client that asks for block sizes (libnbd's
/// default), which is held to it. One that does not may, by proto.md, assume 1; zramd tells it 1 (as qemu-nbd does:
/// its replies to it follow no larger minimum) and serves its byte-granular requests (part of a page is a
/// read-modify-write), as nbdkit and qemu-nbd do, so that libnbd's own checks (strict mode) let them through.
/// </summary>
public sealed class DaemonAlignmentTests
{
    [Fact]
    public void A_client_that_did_not_ask_for_block_sizes_reads_and_writes_single_bytes()
    {
        using RunningDaemon daemon = RunningDaemon.Start(["--size", "16M"]);
        // Strict mode on (libnbd's default): it checks requests against the minimum it was sent.
        ClientTool.PythonNbd(daemon.Uri(), """
            import errno
            h = nbd.NBD()
            h.set_request_block_size(False)
            h.connect_uri(uri)
            assert h.get_block_size(nbd.SIZE_MINIMUM) == 1, h.get_block_size(nbd.SIZE_MINIMUM)
            h.pwrite(b"zram", 4093)                      # across the first two pages
            assert h.pread(6, 4092) == b"\0zram\0", h.pread(6, 4092)
            h.trim(1, 4094)
            assert h.pread(3, 4093) == b"z\0a", h.pread(3, 4093)
            h.shutdown()

            # Asking for block sizes (libnbd's default) binds the client to 512: the same write is refused (strict
            # mode off, so that the server is asked).
            h = nbd.NBD()
            h.set_strict_mode(0)
            h.connect_uri(uri)
            assert h.get_block_size(nbd.SIZE_MINIMUM) == 512, h.get_block_size(nbd.SIZE_MINIMUM)
            try:
                h.pwrite(b"zram", 4093)
                raise AssertionError("an unaligned write was accepted from a client that asked for block sizes")
            except nbd.Error as e:
                assert e.errnum == errno.EINVAL, e
            assert h.pread(4096, 4096)[:2] == b"m\0"
            h.shutdown()
            """).EnsureSuccess();
    }
}
