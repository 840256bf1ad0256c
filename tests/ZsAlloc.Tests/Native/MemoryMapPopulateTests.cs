using System.Runtime.InteropServices;
using ZsAlloc.Native;

namespace ZsAlloc.Tests.Native;

/// <summary>
/// The deferred-free queue faults the pages a batch will write in before it takes its lock (MADV_POPULATE_WRITE):
/// the pages must be resident afterwards, keep what they held, and nothing outside the range may change.
/// Residency is read with mincore(2), page by page.
/// </summary>
public sealed partial class MemoryMapPopulateTests
{
    [LibraryImport("libc", EntryPoint = "mincore", SetLastError = true)]
    private static unsafe partial int MinCore(nint address, nuint length, byte* vector);

    private const int Pages = 16;

    [Fact]
    public unsafe void Populate_makes_a_range_resident_and_keeps_what_it_holds()
    {
        nint region = MemoryMap.Map(Pages * MemoryMap.PageSize);
        try
        {
            var bytes = new Span<byte>((void*)region, Pages * MemoryMap.PageSize);
            bytes[..(2 * MemoryMap.PageSize)].Fill(0xA5);
            Assert.Equal("1100000000000000", Resident(region));

            // Pages 1-9: one written already, eight never touched.
            Assert.True(MemoryMap.Populate(region + MemoryMap.PageSize, 9 * MemoryMap.PageSize), "MADV_POPULATE_WRITE failed");

            Assert.Equal("1111111111000000", Resident(region));
            Assert.True(bytes[..(2 * MemoryMap.PageSize)].IndexOfAnyExcept((byte)0xA5) < 0, "a populated page lost what it held");
            Assert.True(bytes[(2 * MemoryMap.PageSize)..].IndexOfAnyExcept((byte)0) < 0, "populated pages must read as zeros");
        }
        finally
        {
            MemoryMap.Unmap(region, Pages * MemoryMap.PageSize);
        }
    }

    [Theory]
    [InlineData(0, MemoryMap.PageSize)]
    [InlineData(1, MemoryMap.PageSize)]
    [InlineData(MemoryMap.PageSize, 0)]
    [InlineData(MemoryMap.PageSize, 100)]
    public void Populate_refuses_a_range_that_is_not_whole_pages(int offset, int length)
    {
        nint region = MemoryMap.Map(Pages * MemoryMap.PageSize);
        try
        {
            nint address = offset == 0 ? 0 : region + offset;
            Assert.Throws<ArgumentOutOfRangeException>(() => MemoryMap.Populate(address, length));
            Assert.Equal(new string('0', Pages), Resident(region));
        }
        finally
        {
            MemoryMap.Unmap(region, Pages * MemoryMap.PageSize);
        }
    }

    /// <summary>One character per page of the region: 1 resident, 0 not.</summary>
    private static unsafe string Resident(nint region)
    {
        byte* vector = stackalloc byte[Pages];
        Assert.True(MinCore(region, Pages * MemoryMap.PageSize, vector) == 0, $"mincore failed: {Marshal.GetLastPInvokeErrorMessage()}");
        var text = new char[Pages];
        for (int i = 0; i < Pages; i++)
        {
            text[i] = (vector[i] & 1) != 0 ? '1' : '0';
        }

        return new string(text);
    }
}
