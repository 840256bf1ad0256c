namespace ZramDaemon.Control;

/// <summary>What answers control requests: the daemon's device registry.</summary>
public interface IControlHandler
{
    ControlReply Handle(ControlRequest request);
}
