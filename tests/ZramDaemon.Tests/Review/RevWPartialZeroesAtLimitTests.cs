using Nbd.Devices;
using ZramDaemon.Device;
using ZramDaemon.Tests.Device.Writeback;

namespace ZramDaemon.Tests.Review;

/// <summary>
/// Review (RevW): at the memory limit with a backing file, a write that changes part of a page holds that slot's lock
/// while it stores the new page, so the write path's writeback (which passes over locked slots) cannot take the slot's
/// own old object, which may be the only one whose going makes room. <c>WritePartial</c> handles it: on ENOSPC it
/// writes its own slot back (under the lock it holds) and stores again. <c>ZeroPartial</c>, the same read-modify-write
/// for a WRITE_ZEROES of part of a page, does not: it answers ENOSPC while the backing file has room, where a WRITE of
/// the same zero bytes to the same place succeeds. docs/device.md: "Only when nothing more can go to the file (no
/// candidate left, the file full or writeback-limit spent) does it return ENOSPC"; and WRITE_ZEROES "is a write and
/// fails like one".
/// </summary>
public sealed class RevWPartialZeroesAtLimitTests : IDisposable
{
    private const int Page = ZramDevice.PageSize;
    private readonly string _dir = Directory.CreateTempSubdirectory("zramd-revw-zeroes-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    /// <summary>A 1 MiB device at its minimum limit, which holds one huge page, with nothing in the background.</summary>
    private ZramDevice Create(string name) => QuietBackedDevice.Create(_dir, name);

    /// <summary>
    /// FAILS on the current code. Slot 0 holds a random (huge) page, the only object of a device at its limit. A
    /// WRITE_ZEROES of its first 512 bytes needs a new huge object; the only room is the old one's, which can go to the
    /// file (a WRITE of 512 zero bytes there does exactly that and succeeds: checked on a twin device). zramd answers
    /// the WRITE_ZEROES with ENOSPC and the backing file stays empty. Fix: ZeroPartial should do what WritePartial does
    /// on ENOSPC (WritebackLocked of its own slot, then store again).
    /// </summary>
    [Fact]
    public void A_partial_write_zeroes_at_the_limit_writes_its_own_slot_back_as_a_partial_write_does()
    {
        var page = new byte[Page];
        new Random(9).NextBytes(page);
        var expected = (byte[])page.Clone();
        expected.AsSpan(0, 512).Clear();

        using ZramDevice twin = Create("zram1");
        Assert.Equal(NbdError.None, twin.Write(0, page, fua: false));
        Assert.Equal(NbdError.None, twin.Write(0, new byte[512], fua: false)); // the WRITE of the same bytes

        using ZramDevice device = Create("zram0");
        Assert.Equal(NbdError.None, device.Write(0, page, fua: false));
        NbdError error = device.WriteZeroes(0, 512, noHole: false, fastZero: false);
        ZramStats stats = device.GetStats();
        var back = new byte[Page];
        Assert.Equal(NbdError.None, device.Read(0, back));

        Assert.True(error == NbdError.None && back.AsSpan().SequenceEqual(expected),
            $"WRITE_ZEROES of 512 bytes at the limit: {error} (bd_count {stats.BdCount}, mem_used_total {stats.MemUsedTotal} of {stats.MemLimit}); " +
            $"the WRITE of the same bytes on the twin wrote {twin.GetStats().BdWrites} page back and succeeded");
    }
}
