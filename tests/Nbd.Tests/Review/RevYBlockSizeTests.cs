using System.Buffers.Binary;
using Nbd.Devices;
using Nbd.Protocol;
using Nbd.Tests.Devices;
using Nbd.Tests.Interop;
using Nbd.Tests.Sessions;

namespace Nbd.Tests.Review;

/// <summary>
/// Review Y: NBD_INFO_BLOCK_SIZE as 103b73d computes it ("advertised preferred block size kept a power of 2 >=
/// max(min, 512) and within the maximum"), for an export no larger than the maximum.
/// </summary>
public class RevYBlockSizeTests
{
    // 103b73d lowers the preferred size to fit the maximum only "when the maximum is below min(preferred, export
    // size)" (NbdHandshake.InfoOrGoAsync: `preferred > maximum && maximum < Size`). For an export no larger than the
    // maximum it advertises preferred > maximum: here a 4 KiB-minimum device with 64 KiB granules (the spec's "minimum
    // granularity of a hole"), a 16 KiB export and MaxPayload 16 KiB give (4096, 65536, 16384). proto.md tolerates that
    // ("at least as large as the smaller of the preferred block size or export size"), but the commit says "within the
    // maximum", and libnbd does not: lib/flags.c nbd_internal_set_block_size has
    // `if (!min || min > 64*1024 || min > pref || pref < 512 || pref > max) goto ignore;` and drops the whole
    // advertisement, minimum included. libnbd asked for NBD_INFO_BLOCK_SIZE in its GO, so the server holds it to the
    // 4096 minimum (unaligned requests: EINVAL), while libnbd (nbdsh, nbdinfo, nbdcopy, nbdfuse) believes there is no
    // constraint and reports minimum 0. Fix: lower preferred to the largest power of 2 within the maximum whenever it
    // exceeds the maximum (drop the `maximum < Size` condition); the maximum is >= 4096, so that stays >= max(min, 512).
    [Fact]
    public async Task Libnbd_keeps_the_advertised_minimum_for_an_export_no_larger_than_the_maximum()
    {
        var options = new NbdServerOptions { MaxPayload = 16384 };
        var export = new NbdExport("mem", "64k granules", new PreferredBlockSizeDevice(new MemoryBlockDevice(16384, minimumBlockSize: 4096), 65536));
        await using var server = new TestServer(options, export);

        // What goes on the wire.
        using (RawClient client = await RawClient.ConnectAsync(server.SocketPath))
        {
            await client.StartAsync();
            var (_, final, replies) = await client.GoAsync("mem", (ushort)InfoType.BlockSize);
            Assert.Equal(OptionReplyType.Ack, final);
            byte[] info = Assert.Single(replies,
                r => r.Type == OptionReplyType.Info && BinaryPrimitives.ReadUInt16BigEndian(r.Payload) == (ushort)InfoType.BlockSize).Payload;
            uint min = BinaryPrimitives.ReadUInt32BigEndian(info.AsSpan(2));
            uint pref = BinaryPrimitives.ReadUInt32BigEndian(info.AsSpan(6));
            uint max = BinaryPrimitives.ReadUInt32BigEndian(info.AsSpan(10));
            Assert.True(pref <= max, $"preferred {pref} above the maximum {max} (minimum {min}): libnbd ignores the whole NBD_INFO_BLOCK_SIZE");
        }

        // What libnbd makes of it.
        Tool.Result result = await Tool.NbdshAsync($$"""
            h = nbd.NBD()
            h.connect_uri("{{server.Uri()}}")
            print(h.get_block_size(nbd.SIZE_MINIMUM), h.get_block_size(nbd.SIZE_PREFERRED), h.get_block_size(nbd.SIZE_MAXIMUM))
            h.shutdown()
            """);
        Assert.True(result.ExitCode == 0, $"nbdsh failed:\n{result.Stderr}\n{result.Stdout}");
        Assert.Equal("4096", result.Stdout.Trim().Split(' ')[0]);
    }
}
