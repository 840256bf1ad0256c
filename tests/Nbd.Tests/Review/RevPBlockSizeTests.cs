using System.Buffers.Binary;
using Microsoft.Extensions.Logging.Abstractions;
using Nbd.Devices;
using Nbd.Protocol;
using Nbd.Tests.Devices;
using Nbd.Tests.Interop;
using Nbd.Tests.Sessions;

namespace Nbd.Tests.Review;

/// <summary>
/// Review P: the NBD_INFO_BLOCK_SIZE the server puts on the wire, checked against doc/proto.md's "Block size
/// constraints" whatever <see cref="IBlockDevice.PreferredBlockSize"/> the device reports (the interface documents
/// no constraint on it; AddExport checks only the minimum).
/// </summary>
public class RevPBlockSizeTests
{
    // doc/proto.md, "Block size constraints":
    // - minimum: "If advertised, this value MUST be a power of 2, MUST NOT be larger than 2^16 (65,536)";
    // - preferred: "If advertised, this MUST be a power of 2 at least as large as the maximum of the minimum block
    //   size and 2^9 (512)";
    // - maximum: "If advertised, it MAY be something other than a power of 2, but MUST be either an integer multiple
    //   of the minimum block size or the value 0xffffffff for no inherent limit, MUST be at least as large as the
    //   smaller of the preferred block size or export size".
    // NbdHandshake.InfoOrGoAsync sends preferred = Math.Max(minimum, device.PreferredBlockSize) and maximum =
    // MaxPayload rounded down to the minimum, neither checked against these rules:
    // - "byte-addressable": a memory device with no read-modify-write at any size reports 1, and 1 goes on the wire;
    // - "64k-granules": a device whose efficient I/O size is 64 KiB (the spec names "the minimum granularity of a
    //   hole" as a typical preferred size) served with MaxPayload at its allowed floor of 4096
    //   (NbdServerOptions.MaxPayloadFloor): maximum 4096 < min(preferred 65536, export size 16 MiB).
    //   (zramd's own ZramDevice reports 4096, so the daemon does not hit this case.)
    // Refusing such a device or configuration up front (AddExport throwing ArgumentException) would also be a fix.
    [Theory]
    [InlineData("byte-addressable", 1, 1, NbdServerOptions.DefaultMaxPayload)]
    [InlineData("64k-granules", 512, 65536, NbdServerOptions.MaxPayloadFloor)]
    public async Task Advertised_block_sizes_obey_the_spec_whatever_the_device_reports(string name, int minimum, int preferred, int maxPayload)
    {
        var options = new NbdServerOptions { MaxPayload = maxPayload };
        var export = new NbdExport("mem", name, new PreferredBlockSizeDevice(new MemoryBlockDevice(16 << 20, minimumBlockSize: minimum, acceptsAnyAlignment: true), preferred));
        await using (var probe = new NbdServer(options, NullLoggerFactory.Instance))
        {
            try
            {
                probe.AddExport(export);
            }
            catch (ArgumentException)
            {
                return; // refused up front: nothing wrong can reach a client
            }
        }

        await using var server = new TestServer(options, export);
        using RawClient client = await RawClient.ConnectAsync(server.SocketPath);
        await client.StartAsync();
        var (_, final, replies) = await client.GoAsync("mem", (ushort)InfoType.BlockSize);
        Assert.Equal(OptionReplyType.Ack, final);
        byte[] info = Assert.Single(replies,
            r => r.Type == OptionReplyType.Info && BinaryPrimitives.ReadUInt16BigEndian(r.Payload) == (ushort)InfoType.BlockSize).Payload;
        uint min = BinaryPrimitives.ReadUInt32BigEndian(info.AsSpan(2));
        uint pref = BinaryPrimitives.ReadUInt32BigEndian(info.AsSpan(6));
        uint max = BinaryPrimitives.ReadUInt32BigEndian(info.AsSpan(10));
        string sent = $"minimum {min}, preferred {pref}, maximum {max}";

        Assert.True(uint.IsPow2(min) && min <= 65536, "minimum: " + sent);
        Assert.True(uint.IsPow2(pref) && pref >= Math.Max(min, 512u), "preferred must be a power of 2 >= max(minimum, 512): " + sent);
        Assert.True(max == uint.MaxValue || max % min == 0, "maximum must be a multiple of the minimum: " + sent);
        Assert.True(max >= Math.Min(pref, (ulong)server.Server.SnapshotExports()[0].Device.Size), "maximum must be >= min(preferred, export size): " + sent);
    }
}
