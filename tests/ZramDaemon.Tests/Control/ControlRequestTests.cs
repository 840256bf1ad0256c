using ZramDaemon.Control;

namespace ZramDaemon.Tests.Control;

public class ControlRequestTests
{
    [Theory]
    [InlineData("status", "status", null, null, null)]
    [InlineData("compact", "compact", null, null, null)]
    [InlineData("compact zram1", "compact", "zram1", null, null)]
    [InlineData("  stats   zram0 ", "stats", "zram0", null, null)]
    [InlineData("classes zram0", "classes", "zram0", null, null)]
    [InlineData("reset zram2", "reset", "zram2", null, null)]
    [InlineData("set zram0 mem_limit=1G", "set", "zram0", "mem_limit", "1G")]
    [InlineData("idle zram0", "idle", "zram0", null, null)]
    [InlineData("recompress zram0", "recompress", "zram0", null, null)]
    [InlineData("recompress zram0 type=idle", "recompress", "zram0", "idle", null)]
    [InlineData("recompress zram1 max_pages=100 type=huge", "recompress", "zram1", "huge", "100")]
    [InlineData("recompress zram0 max_pages=0", "recompress", "zram0", null, "0")]
    [InlineData("writeback zram0", "writeback", "zram0", null, null)]
    [InlineData("writeback zram2 type=huge max_pages=7", "writeback", "zram2", "huge", "7")]
    public void Parses_each_verb(string line, string verb, string? device, string? key, string? value)
    {
        Assert.True(ControlRequest.TryParse(line, out ControlRequest? request, out string error), error);
        Assert.Equal(new ControlRequest(verb, device, key, value), request);
        Assert.True(ControlRequest.TryParse(request.ToString(), out ControlRequest? again, out _));
        Assert.Equal(request, again);
    }

    [Fact]
    public void Recompress_takes_a_threshold_and_writes_it_back()
    {
        Assert.True(ControlRequest.TryParse("recompress zram0 threshold=3000 type=huge_idle", out ControlRequest? request, out string error), error);
        Assert.Equal(new ControlRequest("recompress", "zram0", "huge_idle", null, "3000"), request);
        Assert.Equal("recompress zram0 type=huge_idle threshold=3000", request.ToString());
        Assert.True(ControlRequest.TryParse("recompress zram0 priority=1 max_pages=5", out request, out error), error);
        Assert.Equal("recompress zram0 max_pages=5 priority=1", request.ToString());

        // An algorithm named like the other key is not that key given twice.
        Assert.True(ControlRequest.TryParse("recompress zram0 algo=priority priority=1", out request, out error), error);
        Assert.Equal("recompress zram0 algo=priority priority=1", request.ToString());
    }

    [Theory]
    [InlineData("", "empty request")]
    [InlineData("status zram0", "wrong arguments for status")]
    [InlineData("stats", "wrong arguments for stats: stats NAME")]
    [InlineData("set zram0", "set NAME KEY=VALUE (mem_limit=SIZE, mem_used_max=0, writeback_limit=SIZE or comp_algorithm=ALGORITHM)")]
    [InlineData("set zram0 mem_limit", "is not an assignment")]
    [InlineData("compact a b", "compact [NAME]")]
    [InlineData("format zram0", "unknown request 'format'")]
    [InlineData("recompress", "recompress NAME [type=idle|huge|huge_idle|all] [max_pages=N] [threshold=BYTES] [algo=NAME] [priority=1]")]
    [InlineData("recompress zram0 type=cold", "the type is idle, huge, huge_idle or all")]
    [InlineData("recompress zram0 max_pages=-1", "max_pages is a whole number")]
    [InlineData("recompress zram0 type=idle type=huge", "type is given twice")]
    [InlineData("idle", "idle NAME")]
    [InlineData("recompress zram0 threshold=4096", "threshold is a size in bytes below the huge class size, 0 for none")]
    [InlineData("recompress zram0 threshold=2K", "threshold is a size in bytes below the huge class size, 0 for none")]
    [InlineData("writeback zram0 threshold=100", "is not a writeback argument")]
    [InlineData("writeback zram0 algo=zstd", "is not a writeback argument")]
    [InlineData("recompress zram0 algo=", "algo= names an algorithm")]
    [InlineData("recompress zram0 algo=zstd algo=lz4", "algo is given twice")]
    [InlineData("recompress zram0 priority=x", "priority= is a number")]
    [InlineData("writeback zram0 type=cold", "the type is idle, huge, huge_idle, incompressible or all")]
    [InlineData("recompress zram0 type=incompressible", "the type is idle, huge, huge_idle or all")]
    [InlineData("writeback zram0 pages=3", "is not a writeback argument: writeback NAME [type=idle|huge|huge_idle|incompressible|all] [max_pages=N]")]
    public void Rejects_with_a_reason(string line, string reason)
    {
        Assert.False(ControlRequest.TryParse(line, out _, out string error));
        Assert.Contains(reason, error, StringComparison.Ordinal);
    }
}
