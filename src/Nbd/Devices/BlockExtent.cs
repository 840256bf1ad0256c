namespace Nbd.Devices;

/// <summary>A run of bytes with the same allocation state, as base:allocation reports it.</summary>
public readonly record struct BlockExtent(long Length, ExtentFlags Flags);
