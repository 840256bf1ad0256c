using Nbd.Tests.Devices;

namespace Nbd.Tests.Interop;

/// <summary>fio's nbd engine (libnbd): random writes verified with crc32c, deep queues, several connections.</summary>
public class FioTests
{
    [Theory]
    [InlineData(1, 64)]
    [InlineData(4, 16)]
    public async Task Random_writes_verify_with_crc32c(int jobs, int depth)
    {
        await using var server = new TestServer(null, new NbdExport("mem", "fio", new MemoryBlockDevice(16 << 20)));

        // Each job writes its own 4 MiB, so verification across jobs is exact.
        Tool.Result result = (await Tool.RunAsync("fio",
        [
            "--name=nbdverify", "--ioengine=nbd", "--uri=" + server.Uri(),
            "--rw=randwrite", "--bsrange=4k-64k", "--bs_unaligned=0", "--iodepth=" + depth, "--numjobs=" + jobs,
            "--size=4M", "--offset_increment=4M", "--verify=crc32c", "--do_verify=1", "--verify_fatal=1",
            "--group_reporting", "--runtime=60",
        ], timeoutSeconds: 120)).EnsureSuccess();

        Assert.DoesNotContain("verify:", result.Stderr);
        Assert.Matches(@"err=\s*0", result.Stdout);
        Assert.Contains("READ: bw=", result.Stdout);  // the verify pass read everything back
        Assert.Contains("WRITE: bw=", result.Stdout);
    }
}
