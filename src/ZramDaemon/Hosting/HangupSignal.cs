using System.Runtime.InteropServices;
using Microsoft.Extensions.Logging;
using ZramDaemon.Native;
using ZramDaemon.Safety;

namespace ZramDaemon.Hosting;

/// <summary>
/// SIGHUP's default action would end zramd at once, with every stored page and no stop sequence; admins send it out of
/// habit after editing a configuration, which zramd reads only at start. So it is ignored from Main's first statement
/// (a SIGHUP while the configuration loads killed zramd before), and each one is a warning once the log exists. A verb
/// gives SIGHUP its default action back.
/// </summary>
internal static partial class HangupSignal
{
    private static readonly Lock Gate = new();
    private static PosixSignalRegistration? _registration;
    private static ILogger? _logger;

    /// <summary>SIGHUPs not logged yet: those before the log existed.</summary>
    private static int _unlogged;

    /// <summary>From now on SIGHUP is ignored. Call first in Main.</summary>
    public static void Ignore()
    {
        lock (Gate)
        {
            if (_registration is not null)
            {
                return;
            }

            // Already an I/O flusher at Main: this image is SwapSafety's re-exec, which ignored SIGHUP across execve (that
            // sets a handled signal back to its default). .NET installs no handler over an ignored signal, so there would
            // be no warning: the default goes back for the microseconds until the handler is in.
            if (IoThread.IsCurrentIoFlusher())
            {
                Interop.Libc.Signal(Interop.Libc.SigHup, Interop.Libc.SigDfl);
            }

            _registration = PosixSignalRegistration.Create(PosixSignal.SIGHUP, OnHangup);
        }
    }

    /// <summary>SIGHUP's default action again, for a verb: it ends as any command does.</summary>
    public static void Restore()
    {
        lock (Gate)
        {
            _registration?.Dispose();
            _registration = null;
        }
    }

    /// <summary>Each SIGHUP is a warning in <paramref name="logger"/> from now on, and those that came before are one
    /// now; disposing stops that (before the logger is disposed), SIGHUP stays ignored.</summary>
    public static IDisposable LogTo(ILogger logger)
    {
        Ignore();
        Volatile.Write(ref _logger, logger);
        LogUnlogged();
        return new Unlogger();
    }

    private static void OnHangup(PosixSignalContext context)
    {
        context.Cancel = true;
        Interlocked.Increment(ref _unlogged);
        LogUnlogged();
    }

    private static void LogUnlogged()
    {
        if (Volatile.Read(ref _logger) is { } logger && Interlocked.Exchange(ref _unlogged, 0) > 0)
        {
            LogHangupIgnored(logger);
        }
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "SIGHUP ignored: zramd reads its configuration only at start and keeps running; a restart applies a new configuration, and empties the devices")]
    private static partial void LogHangupIgnored(ILogger logger);

    private sealed class Unlogger : IDisposable
    {
        public void Dispose() => Volatile.Write(ref _logger, null);
    }
}
