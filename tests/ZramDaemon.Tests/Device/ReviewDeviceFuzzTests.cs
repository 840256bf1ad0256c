using Microsoft.Extensions.Logging.Abstractions;
using Nbd.Devices;
using ZramDaemon.Device;

namespace ZramDaemon.Tests.Device;

/// <summary>Review: one thread, random operations of every kind; after each, the pages and counters are checked.</summary>
public sealed class ReviewDeviceFuzzTests : IDisposable
{
    private const int Page = ZramDevice.PageSize;
    private readonly string _dir = Directory.CreateTempSubdirectory("zramd-review-fuzz-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Theory]
    [InlineData(false, 1)]
    [InlineData(true, 2)]
    [InlineData(false, 3)]
    [InlineData(true, 4)]
    [InlineData(false, 5, true)]
    [InlineData(true, 6, true)]
    [InlineData(false, 7, false, true)]
    [InlineData(true, 8, true, true)]
    public void Every_operation_leaves_pages_and_counters_matching_the_slots(bool dedup, int seed, bool limit = false, bool smallFs = false)
    {
        const int blocks = 64;
        string dir = _dir;
        if (smallFs)
        {
            dir = Path.Combine(_dir, "fs");
            Directory.CreateDirectory(dir);
            using var mount = System.Diagnostics.Process.Start("mount", ["-t", "tmpfs", "-o", "size=32k", "tmpfs", dir])!;
            mount.WaitForExit();
            Assert.Equal(0, mount.ExitCode);
        }

        try
        {
            Run(dedup, seed, limit, blocks, dir);
        }
        finally
        {
            if (smallFs)
            {
                using var umount = System.Diagnostics.Process.Start("umount", [dir])!;
                umount.WaitForExit();
            }
        }
    }

    private static void Run(bool dedup, int seed, bool limit, int blocks, string dir)
    {
        long minimum = ZramDevice.MinimumMemLimitFor(blocks * Page, dedup);
        using var device = new ZramDevice(new ZramDeviceOptions
        {
            Name = "zram0",
            DiskSize = blocks * Page,
            Dedup = dedup,
            RecompressAlgorithm = "zstd:3",
            BackingFile = Path.Combine(dir, "wb"),
            MemLimit = limit ? minimum + (64 << 10) : 0,
            CompactInterval = TimeSpan.FromHours(1),
            CompactThresholdPages = 0,
        }, NullLoggerFactory.Instance);
        var model = new byte[blocks * Page];
        var random = new Random(seed);
        var buffer = new byte[blocks * Page];
        var log = new List<string>();
        for (int step = 0; step < 3000; step++)
        {
            int op = random.Next(15);
            long offset = random.Next(blocks * Page);
            int length = (int)Math.Min(random.Next(1, 3 * Page), (blocks * Page) - offset);
            if (random.Next(2) == 0)
            {
                offset &= ~511L;
                length = Math.Max(512, length & ~511);
                length = (int)Math.Min(length, (blocks * Page) - offset);
            }

            log.Add($"{op} {offset} {length}");
            NbdError error = NbdError.None;
            switch (op)
            {
                case 0:
                case 1:
                case 2:
                    byte[] data = DevicePages.Mixed(random, length);
                    if (random.Next(3) == 0)
                    {
                        // Same contents as elsewhere, for dedup.
                        data = model.AsSpan((int)(random.Next(blocks) * (long)Page), Math.Min(length, Page)).ToArray();
                        length = data.Length;
                        log[^1] = $"{op} {offset} {length} copy";
                    }

                    error = device.Write(offset, data, fua: false);
                    data.CopyTo(model, offset);
                    break;
                case 3:
                    error = device.Trim(offset, length);
                    if (error == NbdError.None)
                    {
                        // At the limit a partial page whose zeroed copy does not fit is left as it was (a trim is a
                        // hint): each byte reads as zero or as before.
                        var after = new byte[length];
                        Assert.Equal(NbdError.None, device.Read(offset, after));
                        for (int i = 0; i < length; i++)
                        {
                            Assert.True(after[i] == 0 || after[i] == model[offset + i], $"step {step}: trimmed byte {offset + i} reads {after[i]}");
                        }

                        if (!limit)
                        {
                            Assert.True(Array.TrueForAll(after, b => b == 0), $"step {step}: a trim left data");
                        }

                        after.CopyTo(model, offset);
                    }

                    break;
                case 4:
                    error = device.WriteZeroes(offset, length, noHole: random.Next(2) == 0, fastZero: false);
                    model.AsSpan((int)offset, length).Clear();
                    break;
                case 5:
                    device.Writeback((SlotSelection)random.Next(4), maxPages: random.Next(0, 8));
                    break;
                case 6:
                    device.Recompress((SlotSelection)random.Next(4), maxPages: random.Next(0, 8));
                    break;
                case 7:
                    device.MarkIdle();
                    break;
                case 8:
                    device.AgeSlots(markAll: false);
                    break;
                case 9:
                    device.Compact();
                    break;
                case 12:
                    if (limit)
                    {
                        device.SetMemLimit(minimum + (random.Next(0, 5) * (32 << 10)));
                    }

                    break;
                case 10:
                    if (random.Next(10) == 0)
                    {
                        device.Reset();
                        Array.Clear(model);
                    }

                    break;
                default:
                    error = device.Read(offset, buffer.AsSpan(0, length));
                    if (error == NbdError.None && !buffer.AsSpan(0, length).SequenceEqual(model.AsSpan((int)offset, length)))
                    {
                        Assert.Fail($"step {step}: read [{offset}, {offset + length}) differs; ops:\n{string.Join("\n", log.TakeLast(30))}");
                    }

                    break;
            }

            if (error == NbdError.NoSpace && limit && op is 0 or 1 or 2 or 4)
            {
                // A refused write changes nothing of the page it failed on, but may have stored pages before it.
                Assert.Equal(NbdError.None, device.Read(0, buffer));
                buffer.CopyTo(model, 0);
                error = NbdError.None;
            }

            Assert.True(error == NbdError.None, $"step {step}: {error}; ops:\n{string.Join("\n", log.TakeLast(30))}");
            try
            {
                ReviewDeviceCounters.AssertMatchSlots(device);
            }
            catch (Exception e)
            {
                Assert.Fail($"step {step}: {e.Message}; ops:\n{string.Join("\n", log.TakeLast(30))}");
            }
        }

        Assert.Equal(NbdError.None, device.Read(0, buffer));
        Assert.True(buffer.AsSpan().SequenceEqual(model));
    }
}
