namespace ZramDaemon.Control;

/// <summary>What answers control requests: the daemon's device registry.</summary>
public interface IControlHandler
{
    /// <param name="stopping">Cancelled when the daemon stops: a long verb (recompress, writeback) ends early and
    /// answers with what it did.</param>
    ControlReply Handle(ControlRequest request, CancellationToken stopping);
}
