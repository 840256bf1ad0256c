namespace ZsAlloc.Tests.Pool;

/// <summary>Object contents for tests: a slice of a fixed random buffer chosen by a seed, so a model keeps only (size, seed).</summary>
internal static class TestPattern
{
    private const int Length = 1 << 17;
    private static readonly byte[] Bytes = MakeBytes();

    public static ReadOnlySpan<byte> Slice(int seed, int size) => Bytes.AsSpan((int)((uint)seed % (Length - ZsPool.MaxObjectSize)), size);

    private static byte[] MakeBytes()
    {
        var bytes = new byte[Length];
        new Random(12345).NextBytes(bytes);
        return bytes;
    }
}
