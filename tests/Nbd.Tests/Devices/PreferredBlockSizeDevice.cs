using Nbd.Devices;

namespace Nbd.Tests.Devices;

/// <summary>A <see cref="MemoryBlockDevice"/> reporting another preferred block size.</summary>
internal sealed class PreferredBlockSizeDevice(MemoryBlockDevice inner, int preferred) : IBlockDevice
{
    public long Size => inner.Size;

    public bool IsReadOnly => inner.IsReadOnly;

    public int MinimumBlockSize => inner.MinimumBlockSize;

    public bool AcceptsAnyAlignment => ((IBlockDevice)inner).AcceptsAnyAlignment;

    public int PreferredBlockSize => preferred;

    public bool SupportsFastZero => inner.SupportsFastZero;

    public NbdError Read(long offset, Span<byte> destination) => inner.Read(offset, destination);

    public NbdError Write(long offset, ReadOnlySpan<byte> source, bool fua) => inner.Write(offset, source, fua);

    public NbdError Flush() => inner.Flush();

    public NbdError Trim(long offset, long length) => inner.Trim(offset, length);

    public NbdError WriteZeroes(long offset, long length, bool noHole, bool fastZero) => inner.WriteZeroes(offset, length, noHole, fastZero);

    public int GetExtents(long offset, long length, Span<BlockExtent> extents) => inner.GetExtents(offset, length, extents);
}
