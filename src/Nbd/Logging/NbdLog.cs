using Microsoft.Extensions.Logging;

namespace Nbd.Logging;

/// <summary>Every log line of the NBD server, source-generated so that disabled levels cost nothing.</summary>
internal static partial class NbdLog
{
    [LoggerMessage(1, LogLevel.Information, "Serving NBD on {Listener}")]
    public static partial void Listening(this ILogger logger, string listener);

    [LoggerMessage(2, LogLevel.Warning, "Refusing connection from {Remote}: {Limit} connections already open")]
    public static partial void TooManyConnections(this ILogger logger, string remote, int limit);

    [LoggerMessage(3, LogLevel.Debug, "Connection {Id} from {Remote} opened")]
    public static partial void ConnectionOpened(this ILogger logger, long id, string remote);

    [LoggerMessage(4, LogLevel.Debug, "Connection {Id} closed")]
    public static partial void ConnectionClosed(this ILogger logger, long id);

    [LoggerMessage(5, LogLevel.Information, "Connection {Id} entered transmission on export '{Export}' (flags {Flags}, structured replies {Structured})")]
    public static partial void TransmissionStarted(this ILogger logger, long id, string export, string flags, bool structured);

    [LoggerMessage(6, LogLevel.Information, "Connection {Id} dropped during the handshake: {Reason}")]
    public static partial void HandshakeFailed(this ILogger logger, long id, string reason);

    [LoggerMessage(7, LogLevel.Debug, "Connection {Id}: option {Option} answered with {Reply}")]
    public static partial void OptionRefused(this ILogger logger, long id, uint option, string reply);

    [LoggerMessage(8, LogLevel.Information, "Connection {Id} dropped: {Reason}")]
    public static partial void ProtocolViolation(this ILogger logger, long id, string reason);

    [LoggerMessage(9, LogLevel.Debug, "Connection {Id} disconnected by the client")]
    public static partial void ClientDisconnected(this ILogger logger, long id);

    [LoggerMessage(10, LogLevel.Warning, "Connection {Id} failed")]
    public static partial void ConnectionFailed(this ILogger logger, long id, Exception exception);

    [LoggerMessage(11, LogLevel.Error, "Accepting on {Listener} failed")]
    public static partial void AcceptFailed(this ILogger logger, string listener, Exception exception);

    [LoggerMessage(12, LogLevel.Information, "Connection {Id} upgraded to TLS ({Protocol})")]
    public static partial void TlsStarted(this ILogger logger, long id, string protocol);

    [LoggerMessage(13, LogLevel.Information, "Stopping: {Count} connections to finish within {Grace}")]
    public static partial void Stopping(this ILogger logger, int count, TimeSpan grace);

    [LoggerMessage(15, LogLevel.Warning, "Stopping: {Count} connections still finishing a device call; waiting for them")]
    public static partial void StillFinishing(this ILogger logger, int count);

    [LoggerMessage(14, LogLevel.Error, "Connection {Id}: the device threw on {Command}; answered EIO")]
    public static partial void DeviceThrew(this ILogger logger, long id, Nbd.Protocol.CommandType command, Exception exception);
}
