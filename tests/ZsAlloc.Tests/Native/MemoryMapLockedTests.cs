using System.Runtime.InteropServices;
using ZsAlloc.Native;

namespace ZsAlloc.Tests.Native;

/// <summary>
/// zramd runs with mlockall (it backs swap), and the kernel refuses MADV_DONTNEED on locked memory. Releasing
/// pool pages must still work there, or compaction and frees could never give memory back.
/// </summary>
public sealed partial class MemoryMapLockedTests
{
    [LibraryImport("libc", EntryPoint = "mlock", SetLastError = true)]
    private static partial int MLock(nint address, nuint length);

    [LibraryImport("libc", EntryPoint = "munlock", SetLastError = true)]
    private static partial int MUnlock(nint address, nuint length);

    /// <summary>From each way Release may be in: MADV_DONTNEED (refused on locked pages, so it moves on),
    /// MADV_DONTNEED_LOCKED, or the MAP_FIXED mapping a kernel before 5.18 leaves it with.</summary>
    [Theory]
    [InlineData(MemoryMap.ReleaseDontNeed)]
    [InlineData(MemoryMap.ReleaseDontNeedLocked)]
    [InlineData(MemoryMap.ReleaseByMapping)]
    public unsafe void Release_of_locked_pages_drops_their_contents_and_keeps_the_range_usable(int mode)
    {
        const int Length = 16 * MemoryMap.PageSize;
        int before = MemoryMap.ReleaseMode;
        MemoryMap.ReleaseMode = mode;
        nint region = MemoryMap.Map(Length);
        try
        {
            var bytes = new Span<byte>((void*)region, Length);
            bytes.Fill(0xA5);

            // 64 KiB is within the default RLIMIT_MEMLOCK (8 MiB), so this works without privileges.
            Assert.True(MLock(region, Length) == 0, $"mlock failed: {Marshal.GetLastPInvokeErrorMessage()}");

            // The middle four pages, as a freed zspage would be.
            nint middle = region + (4 * MemoryMap.PageSize);
            MemoryMap.Release(middle, 4 * MemoryMap.PageSize);
            Assert.True(MemoryMap.ReleaseMode >= Math.Max(mode, MemoryMap.ReleaseDontNeedLocked), "MADV_DONTNEED on locked pages must move Release on");

            Assert.True(bytes.Slice(4 * MemoryMap.PageSize, 4 * MemoryMap.PageSize).IndexOfAnyExcept((byte)0) < 0, "released pages must read as zeros");
            Assert.True(bytes[..(4 * MemoryMap.PageSize)].IndexOfAnyExcept((byte)0xA5) < 0, "pages before the range are untouched");
            Assert.True(bytes[(8 * MemoryMap.PageSize)..].IndexOfAnyExcept((byte)0xA5) < 0, "pages after the range are untouched");

            // Usable again, as a new zspage.
            bytes.Slice(4 * MemoryMap.PageSize, 4 * MemoryMap.PageSize).Fill(0x5A);
            Assert.Equal(0x5A, bytes[5 * MemoryMap.PageSize]);
        }
        finally
        {
            MemoryMap.ReleaseMode = before;
            _ = MUnlock(region, Length);
            MemoryMap.Unmap(region, Length);
        }
    }
}
