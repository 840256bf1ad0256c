using Microsoft.Extensions.Logging;

namespace ZramDaemon.Device;

/// <summary>
/// The device's maintenance thread. It wakes every interval, or at once when the write path
/// <see cref="Kick"/>s it (usage crossed the watermark of the memory limit), and runs
/// <see cref="ZramDevice.BackgroundTick"/> off the I/O path: drain the deferred frees, compact if due. One thread per device; it sleeps when there is nothing to do.
/// </summary>
internal sealed class BackgroundCompactor : IDisposable
{
    private readonly ZramDevice _device;
    private readonly TimeSpan _interval;
    private readonly ILogger _logger;
    private readonly ManualResetEventSlim _wake = new(false);
    private readonly Thread _thread;
    private volatile bool _stopping;
    private int _kicked;

    public BackgroundCompactor(ZramDevice device, TimeSpan interval, ILogger logger)
    {
        _device = device;
        _interval = interval > TimeSpan.Zero ? interval : TimeSpan.FromSeconds(1);
        _logger = logger;
        _thread = new Thread(Run) { IsBackground = true, Name = $"{device.Name}-compact" };
        _thread.Start();
    }

    /// <summary>Asks for a look now. Cheap when already asked: one interlocked exchange, no wake-up.</summary>
    public void Kick()
    {
        if (Volatile.Read(ref _kicked) == 0 && Interlocked.Exchange(ref _kicked, 1) == 0)
        {
            _wake.Set();
        }
    }

    private void Run()
    {
        while (!_stopping)
        {
            _wake.Wait(_interval);
            _wake.Reset();
            if (_stopping)
            {
                break;
            }

            try
            {
                _device.BackgroundTick();
            }
            catch (ObjectDisposedException) when (_stopping)
            {
                break;
            }
            catch (Exception e)
            {
                ZramDeviceLog.CompactorFailed(_logger, e, _device.Name);
            }

            // Allow the next kick only after this look, so a burst of writes over the watermark wakes us once.
            Volatile.Write(ref _kicked, 0);
        }
    }

    public void Dispose()
    {
        _stopping = true;
        _wake.Set();
        _thread.Join();
        _wake.Dispose();
    }
}
