using Nbd.Devices;
using Nbd.Protocol;
using Nbd.Tests.Devices;

namespace Nbd.Tests.Fuzz;

/// <summary>One call that changed (or tried to change) the device, with what the device answered.</summary>
public readonly record struct DeviceMutation(CommandType Kind, long Offset, long Length, NbdError Result);

/// <summary>
/// Wraps the device the fuzz target serves and audits every call the server makes: each must be in bounds and
/// aligned to <see cref="MinimumBlockSize"/> (a call that is not is a validator bug, recorded as a violation
/// instead of reaching the inner device), and each mutating call is logged so the target can check it against
/// the replies the client got. Not thread-safe across runs: the fuzz target runs one input at a time.
/// </summary>
public sealed class AuditedDevice(MemoryBlockDevice inner, int minimumBlockSize) : IBlockDevice
{
    private readonly object _gate = new();
    private readonly List<DeviceMutation> _mutations = [];
    private readonly List<string> _violations = [];

    public long Size => inner.Size;

    public bool IsReadOnly => inner.IsReadOnly;

    public int MinimumBlockSize => minimumBlockSize;

    public int PreferredBlockSize => inner.PreferredBlockSize;

    public bool SupportsFastZero => inner.SupportsFastZero;

    public NbdError Read(long offset, Span<byte> destination) =>
        Check("read", offset, destination.Length, aligned: true) ? inner.Read(offset, destination) : NbdError.Invalid;

    public NbdError Write(long offset, ReadOnlySpan<byte> source, bool fua) =>
        Record(CommandType.Write, offset, source.Length, Check("write", offset, source.Length, aligned: true) ? inner.Write(offset, source, fua) : NbdError.Invalid);

    public NbdError Flush() => inner.Flush();

    public NbdError Trim(long offset, long length) =>
        Record(CommandType.Trim, offset, length, Check("trim", offset, length, aligned: true) ? inner.Trim(offset, length) : NbdError.Invalid);

    public NbdError WriteZeroes(long offset, long length, bool noHole, bool fastZero) =>
        Record(CommandType.WriteZeroes, offset, length, Check("write-zeroes", offset, length, aligned: true) ? inner.WriteZeroes(offset, length, noHole, fastZero) : NbdError.Invalid);

    public int GetExtents(long offset, long length, Span<BlockExtent> extents) =>
        Check("block-status", offset, length, aligned: false) ? inner.GetExtents(offset, length, extents) : 0;

    /// <summary>Returns and clears what was logged since the last call.</summary>
    public (DeviceMutation[] Mutations, string[] Violations) Take()
    {
        lock (_gate)
        {
            (DeviceMutation[], string[]) taken = ([.. _mutations], [.. _violations]);
            _mutations.Clear();
            _violations.Clear();
            return taken;
        }
    }

    private bool Check(string what, long offset, long length, bool aligned)
    {
        bool ok = length > 0 && offset >= 0 && offset <= Size && length <= Size - offset
            && (!aligned || (offset % minimumBlockSize == 0 && length % minimumBlockSize == 0))
            && (what is "read" or "block-status" || !IsReadOnly);
        if (!ok)
        {
            lock (_gate)
            {
                _violations.Add($"{what} offset {offset} length {length} reached the device");
            }
        }

        return ok;
    }

    private NbdError Record(CommandType kind, long offset, long length, NbdError result)
    {
        lock (_gate)
        {
            _mutations.Add(new DeviceMutation(kind, offset, length, result));
        }

        return result;
    }
}
