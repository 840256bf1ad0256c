using ZramDaemon.Attach;

namespace ZramDaemon.Tests.Attach;

/// <summary>Which kernel device a name given to `zramd attach`, `zramd detach` and `attach =` stands for.</summary>
public sealed class DeviceNameTests
{
    /// <summary>The kernel names nbd devices nbd0, nbd1, ... (nbd_dev_add: "nbd%d"), so /dev/nbd01 is no device.
    /// TryParseDevice reads the digits with int.TryParse, which takes leading zeros: `zramd detach /dev/nbd01`
    /// disconnects /dev/nbd1 (a device not named, and everything on it, swap included), and `attach = /dev/nbd00`
    /// beside `attach = /dev/nbd0` passes the configuration's duplicate check (it compares the strings) and fails
    /// the start with EBUSY instead.</summary>
    [Theory]
    [InlineData("/dev/nbd01")]
    [InlineData("/dev/nbd00")]
    [InlineData("nbd007")]
    public void A_device_name_with_a_leading_zero_is_no_nbd_device(string name)
    {
        bool parsed = KernelNbdAttachment.TryParseDevice(name, out int index);
        Assert.False(parsed, $"'{name}' was taken for {KernelNbdAttachment.DevicePathOf(index)}");
    }

    /// <summary>The names the kernel does give, including nbd0 itself and indexes past nbds_max (netlink makes them).</summary>
    [Theory]
    [InlineData("/dev/nbd0", 0)]
    [InlineData("nbd1", 1)]
    [InlineData("/dev/nbd10", 10)]
    [InlineData("/dev/nbd100", 100)]
    public void The_kernels_device_names_parse_to_their_index(string name, int expected)
    {
        Assert.True(KernelNbdAttachment.TryParseDevice(name, out int index));
        Assert.Equal(expected, index);
    }
}
