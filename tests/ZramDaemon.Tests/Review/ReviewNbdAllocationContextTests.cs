using Nbd.Devices;
using ZramDaemon.Device;
using ZramDaemon.Tests.Daemon;
using ZramDaemon.Tests.Device;

namespace ZramDaemon.Tests.Review;

/// <summary>
/// Review: what zramd's base:allocation promises a client. doc/proto.md, "base:allocation metadata context": "If a
/// server supports the base:allocation metadata context, then writing to an extent which has NBD_STATE_HOLE clear
/// MUST NOT fail with NBD_ENOSPC unless for reasons specified in the definition of another context." (NBD_STATE_HOLE:
/// "future writes to that area may cause fragmentation or encounter an NBD_ENOSPC error".)
/// ZramDevice.GetExtents (src/ZramDaemon/Device/ZramDevice.cs) reports every written, non-zero slot as
/// ExtentFlags.Allocated (status 0, HOLE clear), and the Nbd server offers base:allocation for every export; but a
/// device with a mem_limit answers an overwrite of such a slot with ENOSPC as soon as the new data compresses worse
/// (StorePage allocates the new object before the old one is freed, within the limit). So a client told "allocated"
/// gets ENOSPC for a plain overwrite. Lives here rather than in Nbd.Tests because the device is zramd's.
/// </summary>
public sealed class ReviewNbdAllocationContextTests : IAsyncLifetime
{
    private const int Page = ZramDevice.PageSize;
    private const int Pages = 256;
    private readonly string _directory = Path.Combine(Path.GetTempPath(), "review-nbd-" + Guid.NewGuid().ToString("N")[..12]);
    private ServedZramDevice _served = null!;

    private string Uri => $"nbd+unix:///zram0?socket={Path.Combine(_directory, "nbd.sock")}";

    public Task InitializeAsync()
    {
        Directory.CreateDirectory(_directory);
        _served = new ServedZramDevice(new ZramDeviceOptions { Name = "zram0", DiskSize = 8L << 20, CompactThresholdPages = 0 }, Path.Combine(_directory, "nbd.sock"));
        return Task.CompletedTask;
    }

    public async Task DisposeAsync()
    {
        await _served.DisposeAsync();
        Directory.Delete(_directory, recursive: true);
    }

    [Fact]
    public void A_write_over_an_extent_reported_allocated_never_fails_with_ENOSPC()
    {
        ZramDevice device = _served.Device;
        for (int i = 0; i < Pages; i++)
        {
            Assert.Equal(NbdError.None, device.Write((long)i * Page, DevicePages.TextPage(i), fua: false));
        }

        device.FlushDeferredFrees();
        device.Compact();
        // Room for a few more pool pages than the text takes now: 256 incompressible pages need far more.
        device.SetMemLimit(Math.Max(device.MemUsedTotal + (16 * Page), device.MinimumMemLimit));

        ClientTool.PythonNbd(Uri, $$"""
            import errno, os
            h = nbd.NBD()
            h.add_meta_context("base:allocation")
            h.connect_uri(uri)
            assert h.can_meta_context("base:allocation")
            checked = 0
            for i in range({{Pages}}):
                status = []
                h.block_status({{Page}}, i * {{Page}}, lambda meta, offset, entries, err: status.extend(entries), nbd.CMD_FLAG_REQ_ONE)
                if status[1] & nbd.STATE_HOLE:
                    continue
                checked += 1
                try:
                    h.pwrite(os.urandom({{Page}}), i * {{Page}})
                except nbd.Error as e:
                    if e.errnum == errno.ENOSPC:
                        sys.exit(f"page {i}: block status {status} (NBD_STATE_HOLE clear), yet a write to it failed with ENOSPC after {checked - 1} others")
                    raise
            print("checked", checked)
            h.shutdown()
            """).EnsureSuccess();
    }
}
