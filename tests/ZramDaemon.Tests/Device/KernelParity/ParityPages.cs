using System.Runtime.InteropServices;
using System.Text;
using ZramDaemon.Compression;

namespace ZramDaemon.Tests.Device.KernelParity;

/// <summary>What a generated page is, for the tests' reports (the devices see only its bytes).</summary>
internal enum PageKind
{
    Zero,

    /// <summary>One 8-byte word repeated, its two 32-bit halves different (the kernel's same-filled test is a repeated unsigned long).</summary>
    SameWord,

    /// <summary>One 8-byte word repeated whose halves are equal (a repeated int: zramd keeps it in the slot).</summary>
    SameInt,

    /// <summary>Text-like: words from a small vocabulary, some replaced by random letters (more of them, less compressible).</summary>
    Text,

    /// <summary>Random bytes: incompressible, stored raw (huge) by both.</summary>
    Random,

    /// <summary>Random bytes then zeros, sized so that liblz4 compresses the page to a chosen length near the huge thresholds.</summary>
    NearHuge,
}

internal sealed record ParityPage(PageKind Kind, byte[] Data, int Lz4Size)
{
    public override string ToString() => $"{Kind}({Lz4Size})";
}

/// <summary>Deterministic page contents for the kernel parity tests: every page comes from a fixed seed.</summary>
internal static class ParityPages
{
    public const int PageSize = 4096;

    /// <summary>Compressed lengths the near-huge pages aim at (liblz4 1.9.4, acceleration 1, as zramd's lz4 stream):
    /// both sides of the kernel's huge_class_size with CONFIG_ZSMALLOC_CHAIN_SIZE=8 (3632-byte class less the 8-byte handle
    /// header plus one: 3625) and of zramd's (chain 16 and a 4-byte header: 3837), and 3629 (zramd's pool with chains of 8).</summary>
    public static readonly int[] NearHugeTargets = [3500, 3600, 3616, 3620, 3623, 3624, 3625, 3626, 3627, 3628, 3629, 3630, 3640, 3700, 3800, 3830, 3835, 3836, 3837, 3838, 3850, 3900, 4000];

    private static readonly string[] Vocabulary =
    [
        "the", "device", "page", "slot", "pool", "compressed", "memory", "limit", "kernel", "zram", "write", "read",
        "discard", "object", "class", "handle", "of", "and", "to", "in", "is", "for", "with", "that", "on", "as", "by",
        "size", "bytes", "huge", "same", "filled", "swap", "block", "request", "queue", "free", "store", "map", "zero",
        "value", "word", "data", "file", "system", "process", "thread", "lock", "table", "entry", "count", "total",
    ];

    private static readonly Lazy<Compressor> Lz4 = new(() => new Compressor("lz4"));

    /// <summary>liblz4's compressed length of <paramref name="page"/>, or 0 when it does not fit in a page.</summary>
    public static int Lz4Size(ReadOnlySpan<byte> page)
    {
        var output = new byte[CompressionStream.BufferSize];
        lock (Lz4)
        {
            int n = Lz4.Value.Compress(page, output);
            return n is > 0 and < PageSize ? n : 0;
        }
    }

    public static ParityPage Zero() => new(PageKind.Zero, new byte[PageSize], 0);

    public static ParityPage SameWord(Random random)
    {
        ulong word;
        do
        {
            word = (ulong)random.NextInt64();
        }
        while ((uint)word == (uint)(word >> 32) || word == 0);

        return new ParityPage(PageKind.SameWord, Fill(word), 0);
    }

    public static ParityPage SameInt(Random random)
    {
        uint half = (uint)random.Next(1, int.MaxValue);
        return new ParityPage(PageKind.SameInt, Fill(((ulong)half << 32) | half), 0);
    }

    /// <summary>Text with a share <paramref name="noise"/> (0..1) of its words replaced by random letters.</summary>
    public static ParityPage Text(Random random, double noise)
    {
        var text = new StringBuilder(PageSize + 32);
        while (text.Length < PageSize)
        {
            if (random.NextDouble() < noise)
            {
                int length = random.Next(3, 11);
                for (int i = 0; i < length; i++)
                {
                    text.Append((char)random.Next(33, 127));
                }
            }
            else
            {
                text.Append(Vocabulary[random.Next(Vocabulary.Length)]);
            }

            text.Append(random.Next(12) == 0 ? '\n' : ' ');
        }

        byte[] page = Encoding.ASCII.GetBytes(text.ToString(0, PageSize));
        return new ParityPage(PageKind.Text, page, Lz4Size(page));
    }

    public static ParityPage RandomBytes(Random random)
    {
        var page = new byte[PageSize];
        random.NextBytes(page);
        return new ParityPage(PageKind.Random, page, Lz4Size(page));
    }

    /// <summary>
    /// A page that liblz4 compresses to <paramref name="target"/> bytes, or as close as random bytes followed by zeros
    /// get: the random prefix's length is searched for (the compressed length grows with it, about one for one).
    /// </summary>
    public static ParityPage NearHuge(Random random, int target)
    {
        var noise = new byte[PageSize];
        random.NextBytes(noise);
        byte[]? best = null;
        int bestSize = 0;
        for (int prefix = Math.Max(1, target - 64); prefix <= Math.Min(PageSize - 1, target + 8); prefix++)
        {
            var page = new byte[PageSize];
            noise.AsSpan(0, prefix).CopyTo(page);
            int size = Lz4Size(page);
            if (size == 0)
            {
                continue;
            }

            if (best is null || Math.Abs(size - target) < Math.Abs(bestSize - target))
            {
                best = page;
                bestSize = size;
            }

            if (size == target || size > target + 8)
            {
                break;
            }
        }

        return new ParityPage(PageKind.NearHuge, best!, bestSize);
    }

    /// <summary>A page of the given kind (text of a random noise level, a near-huge page of a random target).</summary>
    public static ParityPage Of(PageKind kind, Random random) => kind switch
    {
        PageKind.Zero => Zero(),
        PageKind.SameWord => SameWord(random),
        PageKind.SameInt => SameInt(random),
        PageKind.Text => Text(random, random.Next(0, 10) / 10.0),
        PageKind.Random => RandomBytes(random),
        _ => NearHuge(random, NearHugeTargets[random.Next(NearHugeTargets.Length)]),
    };

    /// <summary>A mixed set: 8% zero, 6% same word, 4% same int, 52% text of noise 0..0.9, 15% random, 15% near huge.</summary>
    public static ParityPage[] Mixed(Random random, int count)
    {
        var pages = new ParityPage[count];
        for (int i = 0; i < count; i++)
        {
            int roll = random.Next(100);
            PageKind kind = roll switch
            {
                < 8 => PageKind.Zero,
                < 14 => PageKind.SameWord,
                < 18 => PageKind.SameInt,
                < 70 => PageKind.Text,
                < 85 => PageKind.Random,
                _ => PageKind.NearHuge,
            };
            pages[i] = Of(kind, random);
        }

        return pages;
    }

    /// <summary>
    /// compr_data_size as zram would count <paramref name="pages"/> if its lz4 compressed them to liblz4's lengths and
    /// stored raw (4096) those of <paramref name="hugeThreshold"/> bytes or more: same-filled pages count nothing.
    /// </summary>
    public static long PredictComprDataSize(IEnumerable<ParityPage> pages, int hugeThreshold)
        => pages.Sum(p => p.Kind is PageKind.Zero or PageKind.SameWord or PageKind.SameInt ? 0L
            : p.Lz4Size == 0 || p.Lz4Size >= hugeThreshold ? PageSize : p.Lz4Size);

    /// <summary>huge_pages as zram would count <paramref name="pages"/> with that threshold (see <see cref="PredictComprDataSize"/>).</summary>
    public static long PredictHugePages(IEnumerable<ParityPage> pages, int hugeThreshold)
        => pages.Count(p => p.Kind is not (PageKind.Zero or PageKind.SameWord or PageKind.SameInt) && (p.Lz4Size == 0 || p.Lz4Size >= hugeThreshold));

    private static byte[] Fill(ulong word)
    {
        var page = new byte[PageSize];
        MemoryMarshal.Cast<byte, ulong>(page.AsSpan()).Fill(word);
        return page;
    }
}
