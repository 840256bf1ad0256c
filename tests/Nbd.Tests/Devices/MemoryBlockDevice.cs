using Nbd.Devices;

namespace Nbd.Tests.Devices;

/// <summary>
/// The device the interop tests serve: a byte array with a state per 4 KiB block (hole, data, or allocated
/// zeroes), so that trim, write-zeroes with and without NO_HOLE and block status have something real to
/// report. One lock: simple and obviously correct, which is what a test oracle should be.
/// </summary>
public sealed class MemoryBlockDevice : IBlockDevice
{
    public const int BlockSize = 4096;

    private readonly byte[] _data;
    private readonly BlockState[] _blocks;
    private readonly object _gate = new();
    private int _flushes;
    private int _fuaWrites;

    public MemoryBlockDevice(long size, bool readOnly = false, bool supportsFastZero = true, int minimumBlockSize = 1, bool acceptsAnyAlignment = false)
    {
        if (size % BlockSize != 0)
        {
            throw new ArgumentException("size must be a multiple of 4 KiB", nameof(size));
        }

        _data = new byte[size];
        _blocks = new BlockState[size / BlockSize];
        IsReadOnly = readOnly;
        SupportsFastZero = supportsFastZero;
        MinimumBlockSize = minimumBlockSize;
        AcceptsAnyAlignment = acceptsAnyAlignment || minimumBlockSize == 1;
    }

    private enum BlockState : byte
    {
        Hole,
        Data,
        Zero,
    }

    public long Size => _data.Length;

    public bool IsReadOnly { get; }

    public int MinimumBlockSize { get; }

    public bool AcceptsAnyAlignment { get; }

    public int PreferredBlockSize => BlockSize;

    public bool SupportsFastZero { get; }

    public int Flushes => Volatile.Read(ref _flushes);

    public int FuaWrites => Volatile.Read(ref _fuaWrites);

    /// <summary>When set, writes fail with ENOSPC (a full device).</summary>
    public bool Full { get; set; }

    public NbdError Read(long offset, Span<byte> destination)
    {
        lock (_gate)
        {
            _data.AsSpan(checked((int)offset), destination.Length).CopyTo(destination);
        }

        return NbdError.None;
    }

    public NbdError Write(long offset, ReadOnlySpan<byte> source, bool fua)
    {
        if (Full)
        {
            return NbdError.NoSpace;
        }

        if (fua)
        {
            Interlocked.Increment(ref _fuaWrites);
        }

        lock (_gate)
        {
            source.CopyTo(_data.AsSpan(checked((int)offset)));
            Mark(offset, source.Length, BlockState.Data);
        }

        return NbdError.None;
    }

    public NbdError Flush()
    {
        Interlocked.Increment(ref _flushes);
        return NbdError.None;
    }

    public NbdError Trim(long offset, long length)
    {
        lock (_gate)
        {
            _data.AsSpan(checked((int)offset), checked((int)length)).Clear();
            MarkWhole(offset, length, BlockState.Hole);
        }

        return NbdError.None;
    }

    public NbdError WriteZeroes(long offset, long length, bool noHole, bool fastZero)
    {
        if (fastZero && !SupportsFastZero)
        {
            return NbdError.NotSupported;
        }

        lock (_gate)
        {
            _data.AsSpan(checked((int)offset), checked((int)length)).Clear();
            MarkWhole(offset, length, noHole ? BlockState.Zero : BlockState.Hole);
        }

        return NbdError.None;
    }

    public int GetExtents(long offset, long length, Span<BlockExtent> extents)
    {
        lock (_gate)
        {
            int count = 0;
            long end = offset + length;
            long position = offset;
            while (position < end)
            {
                ExtentFlags flags = FlagsOf(_blocks[position / BlockSize]);
                long next = Math.Min(end, ((position / BlockSize) + 1) * BlockSize);
                if (count > 0 && extents[count - 1].Flags == flags)
                {
                    extents[count - 1] = extents[count - 1] with { Length = extents[count - 1].Length + (next - position) };
                }
                else if (count < extents.Length)
                {
                    extents[count++] = new BlockExtent(next - position, flags);
                }
                else
                {
                    break;
                }

                position = next;
            }

            return count;
        }
    }

    /// <summary>The extents of the whole device, as a test compares them.</summary>
    public BlockExtent[] Map()
    {
        var extents = new BlockExtent[_blocks.Length];
        return extents[..GetExtents(0, Size, extents)];
    }

    private static ExtentFlags FlagsOf(BlockState state) => state switch
    {
        BlockState.Hole => ExtentFlags.Hole | ExtentFlags.Zero,
        BlockState.Zero => ExtentFlags.Zero,
        _ => ExtentFlags.Allocated,
    };

    /// <summary>Every block the range touches takes <paramref name="state"/> (writes allocate partial blocks).</summary>
    private void Mark(long offset, long length, BlockState state)
    {
        for (long b = offset / BlockSize; b * BlockSize < offset + length; b++)
        {
            _blocks[b] = state;
        }
    }

    /// <summary>Only blocks the range covers entirely change state; partial blocks keep theirs (their bytes were zeroed).</summary>
    private void MarkWhole(long offset, long length, BlockState state)
    {
        for (long b = offset / BlockSize; b * BlockSize < offset + length; b++)
        {
            long start = b * BlockSize;
            if (start >= offset && start + BlockSize <= offset + length)
            {
                _blocks[b] = state;
            }
        }
    }
}
