using Nbd.Devices;
using Nbd.Tests.Devices;

namespace Nbd.Tests.Interop;

/// <summary>qemu's NBD client (block/nbd.c) through qemu-io and qemu-img.</summary>
public class QemuTests
{
    private static Task<Tool.Result> QemuIoAsync(TestServer server, params string[] commands)
    {
        var arguments = new List<string> { "-f", "raw" };
        foreach (string command in commands)
        {
            arguments.Add("-c");
            arguments.Add(command);
        }

        arguments.Add(server.Uri());
        return Tool.RunAsync("qemu-io", arguments);
    }

    [Fact]
    public async Task Qemu_io_fua_writes_zero_writes_discard_and_pattern_reads()
    {
        await using var server = new TestServer();
        MemoryBlockDevice device = server.Device();

        Tool.Result result = (await QemuIoAsync(server,
            "write -P 0x5a 0 256k",
            "write -f -P 0xa5 256k 64k",
            "write -z 64k 64k",
            "write -z -u 128k 64k",
            "discard 192k 64k",
            "read -P 0x5a 0 64k",
            "read -P 0 64k 192k",
            "read -P 0xa5 256k 64k",
            "read -P 0 320k 64k")).EnsureSuccess();

        Assert.DoesNotContain("Pattern verification failed", result.Stdout + result.Stderr);
        Assert.True(device.FuaWrites >= 1, "write -f reached the device as a FUA write");
        Assert.Equal(
            [
                new BlockExtent(64 << 10, ExtentFlags.Allocated),
                new BlockExtent(64 << 10, ExtentFlags.Zero),                      // write -z: NO_HOLE
                new BlockExtent(128 << 10, ExtentFlags.Hole | ExtentFlags.Zero), // write -z -u, discard
                new BlockExtent(64 << 10, ExtentFlags.Allocated),
                new BlockExtent((16 << 20) - (320 << 10), ExtentFlags.Hole | ExtentFlags.Zero),
            ],
            device.Map());
    }

    [Fact]
    public async Task Qemu_img_convert_then_compare_matches_and_detects_a_difference()
    {
        await using var server = new TestServer();
        string image = Path.Combine(server.Directory, "image.raw");
        var data = new byte[16 << 20];
        var random = new Random(7);
        random.NextBytes(data.AsSpan(0, 1 << 20));
        random.NextBytes(data.AsSpan(9 << 20, 512 << 10));
        await File.WriteAllBytesAsync(image, data);

        (await Tool.RunAsync("qemu-img", ["convert", "-n", "-f", "raw", "-O", "raw", image, server.Uri()])).EnsureSuccess();
        (await Tool.RunAsync("qemu-img", ["compare", "-f", "raw", "-F", "raw", image, server.Uri()])).EnsureSuccess();

        server.Device().Write(9 << 20, new byte[] { 0xff }, fua: false);
        Tool.Result differs = await Tool.RunAsync("qemu-img", ["compare", "-f", "raw", "-F", "raw", image, server.Uri()]);
        Assert.Equal(1, differs.ExitCode);
        Assert.Contains("Content mismatch at offset 9437184", differs.Stdout);
    }
}
