using BenchmarkDotNet.Attributes;
using Microsoft.Extensions.Logging.Abstractions;
using Nbd.Devices;
using ZramDaemon.Compression;
using ZramDaemon.Device;

namespace Zram.Benchmarks.Device;

/// <summary>
/// One request through the device, by algorithm: a 4 KiB write of a text page (same-filled check, compress,
/// allocate, swap, deferred free of the old object), a 4 KiB read (decompress into the reply buffer), and a
/// 512-byte write into a stored slot (read-modify-write). Text pages come from the installed .NET SDK files.
/// </summary>
[MemoryDiagnoser]
public class DeviceIoBenchmarks
{
    private const int Slots = 4096;
    private readonly byte[] _buffer = new byte[4096];
    private byte[][] _pages = [];
    private readonly byte[] _compressed = new byte[CompressionStream.BufferSize];
    private ZramDevice? _device;
    private Compressor? _compressor;
    private int _compressedLength;
    private int _next;

    [Params("lz4", "lz4hc", "zstd")]
    public string Algorithm { get; set; } = "lz4";

    [GlobalSetup]
    public void Setup()
    {
        byte[] text = Directory.EnumerateFiles("/usr/share/dotnet", "*.xml", SearchOption.AllDirectories)
            .Take(64).SelectMany(File.ReadAllBytes).Take(Slots * 4096).ToArray();
        _pages = Enumerable.Range(0, text.Length / 4096).Select(i => text.AsSpan(i * 4096, 4096).ToArray()).ToArray();
        _device = new ZramDevice(new ZramDeviceOptions { Name = "bench", DiskSize = Slots * 4096L, Algorithm = Algorithm }, NullLoggerFactory.Instance);
        _compressor = new Compressor(Algorithm);
        _compressedLength = _compressor.Compress(_pages[0], _compressed);
        for (int i = 0; i < Slots; i++)
        {
            _device.Write(i * 4096L, _pages[i % _pages.Length], fua: false);
        }
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _device?.Dispose();
        _compressor?.Dispose();
    }

    /// <summary>The compressor alone on one page: what <see cref="Write4K"/> costs beyond it is the device's.</summary>
    [Benchmark(Baseline = true)]
    public int CompressOnly()
    {
        int i = _next++ & (Slots - 1);
        return _compressor!.Compress(_pages[(i * 7) % _pages.Length], _compressed);
    }

    [Benchmark]
    public bool DecompressOnly() => _compressor!.Decompress(_compressed.AsSpan(0, _compressedLength), _buffer);

    [Benchmark]
    public NbdError Write4K()
    {
        int i = _next++ & (Slots - 1);
        return _device!.Write(i * 4096L, _pages[(i * 7) % _pages.Length], fua: false);
    }

    [Benchmark]
    public NbdError Read4K()
    {
        int i = _next++ & (Slots - 1);
        return _device!.Read(i * 4096L, _buffer);
    }

    [Benchmark]
    public NbdError Write512()
    {
        int i = _next++ & (Slots - 1);
        return _device!.Write((i * 4096L) + 1024, _pages[i % _pages.Length].AsSpan(0, 512), fua: false);
    }
}
