using ZramDaemon.Attach;

namespace ZramDaemon.Tests.Attach;

/// <summary>Detaching a kernel nbd device that this process attached, when the detach fails. (Attaching needs the
/// nbd module and root; the VM tests do that.)</summary>
public sealed class KernelNbdAttachmentTests
{
    /// <summary>Dispose marked the attachment detached before detaching: when NbdNetlink.Open or Disconnect threw, a
    /// second Dispose returned without trying, and the device stayed attached with no way to detach it in-process.</summary>
    [Fact]
    public void A_failed_detach_is_tried_again_by_the_next_Dispose()
    {
        // No nbd device has this index: the disconnect fails on every host (no nbd netlink family; or the kernel
        // finds no such device, or refuses a non-root caller) and disconnects nothing.
        var attachment = new KernelNbdAttachment(int.MaxValue, NbdAttachMethod.Netlink, new NbdExportInfo(1 << 20, 1, 0), null, null);

        NbdAttachException first = Assert.Throws<NbdAttachException>(attachment.Dispose);
        NbdAttachException again = Assert.Throws<NbdAttachException>(attachment.Dispose);
        Assert.Equal(first.Message, again.Message);
    }
}
