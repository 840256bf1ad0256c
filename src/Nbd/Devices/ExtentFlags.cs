namespace Nbd.Devices;

/// <summary>base:allocation state bits (NBD_STATE_HOLE, NBD_STATE_ZERO).</summary>
[Flags]
public enum ExtentFlags : uint
{
    Allocated = 0,
    Hole = 1,
    Zero = 2,
}
