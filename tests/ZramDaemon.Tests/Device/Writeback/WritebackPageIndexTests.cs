using Microsoft.Extensions.Logging.Abstractions;
using Nbd.Devices;
using ZramDaemon.Control;
using ZramDaemon.Device;
using ZramDaemon.Device.Writeback;
using ZramDaemon.Tests.Review;

namespace ZramDaemon.Tests.Device.Writeback;

/// <summary>
/// writeback's page_index=N and page_indexes=LOW-HIGH (the kernel's since 6.16: any number of each, LOW-HIGH
/// inclusive; an index past the device is ERANGE): only the pages named go, whatever their type unless a type= is given
/// too (zramd then takes the pages named that are of the type; the kernel's order-dependent mix is not kept).
/// </summary>
public sealed class WritebackPageIndexTests : IDisposable
{
    private const int Page = ZramDevice.PageSize;
    private const int Pages = 64;
    private readonly string _dir = Directory.CreateTempSubdirectory("zramd-wbidx-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private ZramDevice Create()
    {
        var device = new ZramDevice(new ZramDeviceOptions
        {
            Name = "zram0",
            DiskSize = (long)Pages * Page,
            BackingFile = Path.Combine(_dir, "zram0.wb"),
        }, NullLoggerFactory.Instance);
        for (int i = 0; i < Pages; i++)
        {
            Assert.Equal(NbdError.None, device.Write((long)i * Page, DevicePages.TextPage(i), fua: false));
        }

        return device;
    }

    private static int[] WrittenBack(ZramDevice device)
        => Enumerable.Range(0, Pages).Where(i => SlotInfo.IsWrittenBack(device.Slots.PeekInfo(i))).ToArray();

    [Fact]
    public void Only_the_pages_named_go_and_they_read_back()
    {
        using ZramDevice device = Create();

        WritebackResult result = device.Writeback(SlotSelection.All, pages: [new PageRange(42, 43), new PageRange(3, 6), new PageRange(5, 8), new PageRange(63, 64)]);

        int[] expected = [3, 4, 5, 6, 7, 42, 63];
        Assert.Equal(expected.Length, result.WrittenBack);
        Assert.Equal(expected, WrittenBack(device));
        var back = new byte[Page];
        foreach (int i in expected)
        {
            Assert.Equal(NbdError.None, device.Read((long)i * Page, back));
            Assert.Equal(DevicePages.TextPage(i), back);
        }
    }

    [Fact]
    public void A_type_with_pages_takes_the_pages_named_of_that_type_and_max_pages_bounds_them()
    {
        using ZramDevice device = Create();
        device.MarkIdle();
        for (int i = 10; i < 20; i += 2)
        {
            Assert.Equal(NbdError.None, device.Read((long)i * Page, new byte[Page])); // even pages of 10-19 active again
        }

        Assert.Equal(5, device.Writeback(SlotSelection.Idle, pages: [new PageRange(10, 20)]).WrittenBack);
        Assert.Equal([11, 13, 15, 17, 19], WrittenBack(device));
        Assert.Equal(2, device.Writeback(SlotSelection.All, maxPages: 2, pages: [new PageRange(30, 40)]).WrittenBack);
        Assert.Equal(2, WrittenBack(device).Count(i => i is >= 30 and < 40));
        Assert.Equal(7, WrittenBack(device).Length);
    }

    [Theory]
    [InlineData("writeback zram0 page_index=42", new[] { 42 })]
    [InlineData("writeback zram0 page_index=42 page_index=7 page_indexes=60-63", new[] { 7, 42, 60, 61, 62, 63 })]
    [InlineData("writeback zram0 page_indexes=0-0 page_indexes=2-3", new[] { 0, 2, 3 })]
    public async Task The_verb_writes_back_the_pages_it_names(string line, int[] expected)
    {
        using ZramDevice device = Create();

        ControlReply reply = await RevFControlVerbTests.SendAsync(device, line);

        Assert.True(reply.Ok, reply.Error);
        Assert.Equal(expected, WrittenBack(device));
    }

    [Theory]
    [InlineData("writeback zram0 page_index=64", "page_index=64: zram0 has 64 pages (0-63)")]
    [InlineData("writeback zram0 page_indexes=60-64", "page_indexes=60-64: zram0 has 64 pages (0-63)")]
    [InlineData("writeback zram0 page_indexes=3-2", "LOW-HIGH, LOW at most HIGH")]
    [InlineData("writeback zram0 page_indexes=3", "LOW-HIGH, LOW at most HIGH")]
    [InlineData("writeback zram0 page_index=-1", "page_index= is a page number")]
    [InlineData("writeback zram0 page_index=", "page_index= is a page number")]
    [InlineData("recompress zram0 page_index=1", "is not a recompress argument")]
    public async Task Bad_page_indexes_are_refused_and_nothing_is_written(string line, string reason)
    {
        using ZramDevice device = Create();

        ControlReply reply = await RevFControlVerbTests.SendAsync(device, line);

        Assert.False(reply.Ok, reply.Text);
        Assert.Contains(reason, reply.Error, StringComparison.Ordinal);
        Assert.Empty(WrittenBack(device));
    }

    [Fact]
    public void The_request_keeps_the_pages_through_its_text()
    {
        Assert.True(ControlRequest.TryParse("writeback zram0 page_index=1 type=idle page_indexes=4-9 page_index=1", out ControlRequest? request, out string error), error);
        Assert.Equal("page_index=1 page_indexes=4-9 page_index=1", request.Pages);
        Assert.True(ControlRequest.TryParse(request.ToString(), out ControlRequest? again, out error), error);
        Assert.Equal(request, again);
    }
}
