using ZramDaemon.Tests.Compression;

namespace ZramDaemon.Tests.Device;

/// <summary>Test data of the kinds a zram device meets: text, random (incompressible), zero and same-filled pages.</summary>
internal static class DevicePages
{
    private const int PageSize = ZramDaemon.Device.ZramDevice.PageSize;

    private static readonly Lazy<byte[][]> Text = new(() => CompressorTests.TextPages(256));

    public static byte[] TextPage(int i) => Text.Value[i % Text.Value.Length];

    /// <summary>A page of random bytes from <paramref name="seed"/>: incompressible, stored raw (huge).</summary>
    public static byte[] RandomPage(int seed)
    {
        var page = new byte[PageSize];
        new Random(seed).NextBytes(page);
        return page;
    }

    /// <summary>A page of <paramref name="value"/> repeated.</summary>
    public static byte[] SameFilled(ulong value)
    {
        var page = new byte[PageSize];
        System.Runtime.InteropServices.MemoryMarshal.Cast<byte, ulong>(page.AsSpan()).Fill(value);
        return page;
    }

    /// <summary>
    /// A mixed buffer of <paramref name="length"/> bytes: runs of text, random bytes, zeros and one repeated word (half
    /// the time a repeated 32-bit value, which a slot holds itself; else one that takes a pool word).
    /// </summary>
    public static byte[] Mixed(Random random, int length)
    {
        var data = new byte[length];
        int pos = 0;
        while (pos < length)
        {
            int run = Math.Min(length - pos, 512 * random.Next(1, 17));
            Span<byte> span = data.AsSpan(pos, run);
            switch (random.Next(6))
            {
                case 0:
                case 1:
                case 2:
                    byte[] page = TextPage(random.Next(1 << 20));
                    for (int i = 0; i < run; i += page.Length)
                    {
                        page.AsSpan(0, Math.Min(page.Length, run - i)).CopyTo(span[i..]);
                    }

                    break;
                case 3:
                    random.NextBytes(span);
                    break;
                case 4:
                    span.Clear();
                    break;
                default:
                    ulong word = (ulong)random.NextInt64();
                    System.Runtime.InteropServices.MemoryMarshal.Cast<byte, ulong>(span).Fill(random.Next(2) == 0 ? word : (word << 32) | (uint)word);
                    break;
            }

            pos += run;
        }

        return data;
    }
}
