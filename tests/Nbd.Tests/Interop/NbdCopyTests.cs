namespace Nbd.Tests.Interop;

public class NbdCopyTests
{
    [Fact]
    public async Task Round_trip_of_a_file_with_a_sparse_tail_is_exact_and_keeps_the_tail_a_hole()
    {
        await using var server = new TestServer();
        string source = Path.Combine(server.Directory, "source.img");
        string back = Path.Combine(server.Directory, "back.img");
        var data = new byte[3 << 20];
        new Random(42).NextBytes(data);
        await using (FileStream file = File.Create(source))
        {
            await file.WriteAsync(data);
            file.SetLength(16 << 20); // 13 MiB sparse tail
        }

        (await Tool.RunAsync("nbdcopy", [source, server.Uri()])).EnsureSuccess();
        (await Tool.RunAsync("nbdcopy", [server.Uri(), back])).EnsureSuccess();

        Assert.Equal(await File.ReadAllBytesAsync(source), await File.ReadAllBytesAsync(back));

        // nbdcopy zeroes the sparse tail with WRITE_ZEROES (or leaves it); either way it must read as a hole.
        string map = (await Tool.RunAsync("nbdinfo", ["--map", "--totals", server.Uri()])).EnsureSuccess().Stdout;
        Assert.Matches(@"(?m)^\s*3145728\s+18\.8%\s+0\s+data", map);
        Assert.Matches(@"(?m)^\s*13631488\s+81\.2%\s+3\s+hole,zero", map);
    }
}
