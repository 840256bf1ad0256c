using System.Diagnostics.CodeAnalysis;

namespace ZsAlloc;

/// <summary>Throws for the hot paths, kept out of line so the callers stay small.</summary>
internal static class ThrowHelper
{
    [DoesNotReturn]
    public static void ThrowSizeOutOfRange(int size) =>
        throw new ArgumentOutOfRangeException(nameof(size), size, $"An object is 1..{ZsPool.MaxObjectSize} bytes.");

    [DoesNotReturn]
    public static void ThrowSizesMismatch(int handles, int sizes) =>
        throw new ArgumentException($"{handles} handles but {sizes} sizes.", nameof(sizes));

    [DoesNotReturn]
    public static void ThrowForeignHandle(uint handle) =>
        throw new ArgumentException($"0x{handle:x8} is not a handle of this pool.", nameof(handle));

    [DoesNotReturn]
    public static void ThrowFreedHandle(uint handle) =>
        throw new InvalidOperationException($"Handle 0x{handle:x8} has been freed.");

    [DoesNotReturn]
    public static void ThrowLongerThanObject(int length, int size) =>
        throw new ArgumentException($"{length} bytes do not fit an object of {size} bytes.");

    [DoesNotReturn]
    public static void ThrowCorrupt(uint handle) =>
        throw new InvalidOperationException($"The header of handle 0x{handle:x8} does not name its cell: pool memory is corrupt.");
}
