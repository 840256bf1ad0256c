using System.Buffers;
using System.Diagnostics;
using System.Net.Security;
using Microsoft.Extensions.Logging;
using Nbd.Devices;
using Nbd.Logging;
using Nbd.Native;
using Nbd.Protocol;
using Nbd.Threading;
using Nbd.Transport;

namespace Nbd.Sessions;

/// <summary>
/// The transmission phase of one connection, on threads of its own with blocking socket calls (nbdkit's model):
/// a few threads per connection, each owning one <see cref="RequestSlot"/>, take turns at reading. A thread
/// takes <see cref="_readLock"/>, reads one request header (and a WRITE's payload straight into its slot's
/// own buffer), validates it (<see cref="RequestValidator"/>) and lets go of the lock; then it runs the
/// synchronous device call and answers (queued for whoever holds <see cref="_sendLock"/>, or sent under it, see
/// <see cref="Reply"/>), while the next thread is already reading. So a request is never handed from thread to
/// thread: at queue depth 1 the thread the data woke runs it at once, and at depth 32 as many requests run at
/// once as there are threads. At queue depth 1 (nothing else buffered or waiting in the socket, no other request
/// in flight) and while a CPU is free, the thread that read a request keeps the turn while it runs it: no other
/// thread is woken only to block in recv, and the same thread comes back to read the next request
/// (<see cref="MoreInputLikely"/>; <see cref="FutexLock.ExitWithoutWake"/>). Should that request take long, the
/// server's <see cref="ReadTurnWatchdog"/> wakes another thread within 5-10 ms, so what the client
/// sends meanwhile is still read. With nothing buffered, the thread that takes the read turn polls the socket
/// briefly before it blocks in recv (<see cref="NbdServerOptions.BusyPollMicroseconds"/>), also only while a CPU
/// is free for it (<see cref="RunQueue"/>): a client at queue depth 1 sends its next request within that, and
/// finds a thread running instead of one to wake. Replies go out in completion order (any order is allowed); small ones are copied
/// into the reply queue and sent in batches, READ data over 16 KiB goes from the slot buffer to the socket with
/// its header written in front of it. A small reply finished while another request is still running is left in
/// the queue for that request's thread to send with its own (up to <see cref="BatchReplies"/>), but never while
/// the reader waits for the client (<see cref="BeginWaitingForInput"/>). A refused request is answered without touching the device. Both turns
/// are <see cref="FutexLock"/>s: one system call to sleep or wake, not the runtime's wait subsystem. A thread
/// that finishes a request while others of its connection are in flight or buffered waits for its next turn under
/// SCHED_BATCH, so that its wake-up does not preempt a client still sending; at depth 1 it stays SCHED_OTHER
/// (<see cref="ScheduleForDepth"/>).
///
/// In flight: at most one request per thread, and the threads are min(WorkerThreadsPerConnection,
/// MaxInFlightPerConnection); while every thread is busy nobody reads, so a fast client is slowed by the socket
/// (back-pressure), not buffered. Queued replies count as in flight until sent: at MaxInFlightPerConnection the
/// thread with the read turn sends the queue first, waiting for the send turn, so a client that does not read
/// its replies stops being read.
///
/// Why dedicated threads: a daemon that backs swap must make progress while the machine swaps. The shared
/// thread pool and the runtime's epoll thread can stall then (their injection is heuristic, and they serve
/// everything else too); these threads only block in recv/send and on this connection's own locks, and they are
/// started through <see cref="NbdServerOptions.IoThreadStarted"/> (PR_SET_IO_FLUSHER in the daemon).
///
/// Transports: plain connections use the socket directly (<see cref="BlockingSocketStream"/>: recv and send);
/// TLS goes through the SslStream's synchronous Read and Write, whose inner stream is that same blocking socket
/// stream. Any other stream (the fuzz target's) works the same way.
///
/// Lifetime: the thread that reads NBD_CMD_DISC, end of stream or a protocol violation marks the connection
/// ended; each thread finishes its request and leaves at its next turn, and the calling thread waits for all of
/// them before it closes the connection. So DISC finishes outstanding requests first, as the spec requires.
/// <see cref="Abort"/> shuts the socket down, which ends every blocked call; the descriptor is closed only after
/// every thread is done with it.
///
/// No per-request allocation: slots, buffers (each thread's own mapping, unmapped when it leaves, or after a request
/// over 4 MiB), the reply
/// queue and the locks are all reused.
/// </summary>
internal sealed class NbdSession
{
    // One receive takes up to 128 KiB: at depth 32, 32 small requests (4 KiB writes with their headers) arrive
    // in one system call, and the threads after this one find theirs already buffered. Payloads of 16 KiB and
    // more skip the buffer and are received straight into the request's own buffer, so they are never copied.
    private const int ReceiveBufferSize = 128 * 1024;
    private const int DirectReceiveSize = 16 * 1024;
    private const int SendBufferSize = 64 * 1024;

    // A thread's data buffer larger than this (a request over 4 MiB grew it) is unmapped once that request is answered:
    // kept, the four threads of a connection that carried one 32 MiB request each would hold 128 MiB while the
    // connection idles (locked, as root), whoever the client. The kernel's requests (1.25 MiB at most by default) and
    // nbdcopy's (256 KiB) stay under it and keep their buffers.
    private const int RetainedBufferBytes = (4 << 20) + (64 << 10);

    // Replies waiting for the send turn: two buffers, one filling while the other is sent. Reads up to 16 KiB
    // are copied in (a memcpy is far cheaper than waiting for the turn); larger ones go out from their buffer.
    private const int QueueSize = 64 * 1024;
    private const int QueuedDataLimit = 16 * 1024;

    private const int SendStart = ReceiveBufferSize;
    private const int QueueStart = SendStart + SendBufferSize;
    private const int BuffersSize = QueueStart + 2 * QueueSize;
    // The most replies a finished request leaves queued for a running one to send (see Reply).
    private const int BatchReplies = 16;

    private readonly Stream _stream;
    private readonly BlockingSocketStream? _socket;
    private readonly bool _plain; // the stream is the socket itself (no TLS): what recv returned is all it had
    private readonly IBlockDevice _device;
    private readonly ILogger _logger;
    private readonly long _id;
    private readonly ConnectionLimits _limits;
    private readonly NbdServerOptions _options;
    private readonly int _threadCount;
    private readonly int _maxInFlight;
    private readonly long _busyPollTicks;
    private readonly ReadTurnWatchdog? _watchdog;
    private readonly FutexLock _readLock = new();
    private readonly FutexLock _sendLock = new();
    private readonly byte[] _header = new byte[RequestHeader.Size];
    // The receive buffer, the send buffer and the two reply queues, in that order, in one mapping: mapped when the
    // connection starts serving and unmapped when it ends (a managed array stays resident until a full GC).
    private readonly MappedBuffer _buffers = new();
    private readonly FutexLock _queueLock = new();
    private int _queueStart = QueueStart;
    private int _spareQueueStart = QueueStart + QueueSize;
    private int _queued;
    private int _queuedReplies;
    private int _receiveStart;
    private int _receiveEnd;
    private int _sendCount;
    private int _inFlight;
    private int _executing; // read and not yet answered (queued or sent)
    private int _sending; // replies of _inFlight whose write has started (see ScheduleForDepth)
    private int _waitingForInput; // 1 while the reader polls or receives
    private bool _drained; // a receive while reading this request emptied the socket (see MoreInputLikely)
    private bool _ended;
    private bool _clean;
    private volatile bool _shuttingDown;
    private volatile bool _broken;

    // When the thread that kept the read turn (queue depth 1) started its request, 0 when none runs; and when a
    // turn was last kept. Written by that thread, read (and the first cleared) by the watchdog.
    private long _keptSince;
    private long _lastKeptTurn;

    /// <param name="socket">The connection's socket, when it has one: under TLS the handshake's stream is an
    /// SslStream over it. Aborting shuts it down; without it, aborting closes the stream.</param>
    /// <param name="watchdog">The server's <see cref="ReadTurnWatchdog"/>: without one the read turn is always
    /// handed on.</param>
    public NbdSession(HandshakeResult handshake, NbdServerOptions options, ILogger logger, long id, BlockingSocketStream? socket = null, ReadTurnWatchdog? watchdog = null)
    {
        _watchdog = watchdog;
        _stream = handshake.Stream;
        _socket = socket ?? handshake.Stream as BlockingSocketStream;
        _plain = _stream is BlockingSocketStream;
        _device = handshake.Export.Device;
        _logger = logger;
        _id = id;
        _options = options;
        _limits = new ConnectionLimits(
            _device.Size,
            _device.IsReadOnly,
            // proto.md: a client that did not ask for block sizes may assume a minimum of 1.
            handshake.BlockSizesRequested || !_device.AcceptsAnyAlignment ? Math.Max(1, _device.MinimumBlockSize) : 1,
            options.MaxPayload,
            handshake.StructuredReplies,
            handshake.BaseAllocation,
            _device.SupportsFastZero);
        _threadCount = Math.Min(options.WorkerThreadsPerConnection, options.MaxInFlightPerConnection);
        _maxInFlight = options.MaxInFlightPerConnection;
        _busyPollTicks = Stopwatch.Frequency * options.BusyPollMicroseconds / 1_000_000;
    }

    /// <summary>Requests read and not yet answered.</summary>
    public int InFlight => Volatile.Read(ref _inFlight);

    /// <summary>From now on requests are answered with ESHUTDOWN; those already in flight finish normally.</summary>
    public void BeginShutdown() => _shuttingDown = true;

    /// <summary>Hard disconnect: shuts the socket down under every thread of the connection (or, for a stream
    /// that is not a socket, closes it).</summary>
    public void Abort()
    {
        _broken = true;
        if (_socket is not null)
        {
            _socket.Shutdown();
        }
        else
        {
            _stream.Dispose();
        }
    }

    /// <summary>Serves the connection on the calling thread and threads of its own until it ends, then closes
    /// the stream.</summary>
    public void Run()
    {
        _buffers.Ensure(BuffersSize);
        var others = new List<Thread>(_threadCount - 1);
        try
        {
            // Before any thread runs: a thread that keeps the read turn before the watchdog knows the session could
            // stall its connection's other requests with nobody to kick it.
            _watchdog?.Add(this);
            for (int i = 1; i < _threadCount; i++)
            {
                var slot = new RequestSlot();
                others.Add(NbdServer.StartIoThread($"nbd-{_id}.{i}", () => Serve(slot), _options));
            }

            Serve(new RequestSlot());
        }
        catch
        {
            // Not the way out of a connection (errors end it inside Serve), but should it happen, the other threads
            // must stop using the buffers before they are unmapped below. Should this thread have kept the read turn,
            // the watchdog (still registered until after the joins) wakes the next one.
            Abort();
            throw;
        }
        finally
        {
            foreach (Thread other in others)
            {
                other.Join();
            }

            _watchdog?.Remove(this);
            _buffers.Unmap();
        }

        if (_clean && !_broken && _stream is SslStream ssl)
        {
            try
            {
                ssl.ShutdownAsync().GetAwaiter().GetResult();
            }
            catch (Exception e) when (e is IOException or ObjectDisposedException)
            {
                // The client may already be gone; the socket is closed next anyway.
            }
        }

        _stream.Dispose();
    }

    /// <summary>One thread's loop: read a request at its turn, run it, reply. Its buffer goes when it leaves.</summary>
    private void Serve(RequestSlot slot)
    {
        try
        {
            ServeLoop(slot);
        }
        finally
        {
            slot.Buffer.Unmap();
        }
    }

    private void ServeLoop(RequestSlot slot)
    {
        while (true)
        {
            _readLock.Enter();
            bool keep = false;
            try
            {
                if (Volatile.Read(ref _inFlight) >= _maxInFlight)
                {
                    // Replies queued but not sent count as in flight: at the limit, send them (waiting for the
                    // send turn, and so for a client that does not read its replies) before reading more.
                    SendQueuedWaiting();
                }

                // Broken (a reply could not be sent: the client is gone): the requests still buffered are not run,
                // their replies would be dropped, and nothing would hold back a departed client's pipeline of costly ones.
                if (_ended || _broken || !TryReadRequest(slot))
                {
                    _ended = true;
                    return;
                }

                keep = _watchdog is not null && _options.KeepReadTurnGate!() && !MoreInputLikely();
            }
            finally
            {
                if (keep)
                {
                    _readLock.ExitWithoutWake();
                }
                else
                {
                    _readLock.Exit();
                }
            }

            if (keep)
            {
                KeepTurn();
            }

            if (slot.Error == NbdError.None)
            {
                Execute(slot);
            }
            else
            {
                Reply(slot);
            }

            // Answered: the reply's data has left the buffer (large READ data is sent under the send turn, not queued).
            if (slot.Buffer.Capacity > RetainedBufferBytes)
            {
                slot.Buffer.Unmap();
            }

            if (_options.BatchSchedulingWhenBusy)
            {
                ScheduleForDepth(slot);
            }

            if (keep)
            {
                Volatile.Write(ref _keptSince, 0);
            }
        }
    }

    /// <summary>
    /// Sets this thread's policy for its next wait: SCHED_BATCH while other requests of the connection are in flight
    /// or buffered, SCHED_OTHER otherwise; a system call only when that changes. A thread under SCHED_BATCH that is
    /// woken (by the client's send, or by the thread before it letting go of a turn) does not preempt the running
    /// thread. At depth 32 the client is then left to queue more requests before it sleeps, instead of being switched
    /// out at every send: on the quiet two-core VM, 4 KiB qd32 reads over two connections ran at 2.6x (101.9k against
    /// 39.7k) and over one at 1.25x, writes over two at 2.2x. At depth 1 the client sleeps until the reply, and a
    /// thread that preempts nobody waits for a CPU the machine gives to others: with two CPU-bound processes
    /// running, qd1 reads fell to 0.29x under SCHED_BATCH throughout, which is why depth 1 stays SCHED_OTHER.
    /// </summary>
    private void ScheduleForDepth(RequestSlot slot)
    {
        // One request in flight may be this thread's own, its reply queued for the thread holding the send turn: at
        // depth 1 that one must not count (CI caught a depth-1 thread waiting under SCHED_BATCH). Other queued replies
        // do count: 4 KiB writes over two connections at qd32 ran 0.67x when only running requests did.
        // A reply being written counts only if the client has sent more meanwhile: its write may have returned with
        // the writer preempted by the client it woke (at depth 1 the client's next request is then served while the
        // last reply still counts), but discounting such replies outright halved 4 KiB reads at qd32, whose client
        // keeps requests waiting in the socket (docs/nbd.md). The socket is asked only in that ambiguous case.
        // A large read or write is served for long per wake-up, and then prompt service is worth more than not
        // preempting the client: 128 KiB reads at qd16 ran 1.06x under SCHED_OTHER.
        bool busy = !IsLargeTransfer(slot.Request)
            && (Volatile.Read(ref _executing) > 0 || _receiveEnd != _receiveStart || OthersInFlight());
        if (busy != slot.BatchScheduled)
        {
            // A refusal (a seccomp filter, say) leaves the policy as it was; not retried until the depth changes.
            Libc.SchedSetScheduler(0, busy ? Libc.SchedBatch : Libc.SchedOther, 0);
            slot.BatchScheduled = busy;
        }
    }

    /// <summary>Whether requests other than one are in flight, replies being written counting only while the client
    /// has more input waiting (<see cref="ScheduleForDepth"/>).</summary>
    private bool OthersInFlight()
    {
        int inFlight = Volatile.Read(ref _inFlight);
        if (inFlight <= 1)
        {
            return false;
        }

        return inFlight - Volatile.Read(ref _sending) > 1 || InputMayBeWaiting();
    }

    /// <summary>Whether the client may have sent input not read yet: the plain socket is asked (FIONREAD); TLS buffers
    /// input of its own, so any other stream may always have some.</summary>
    private bool InputMayBeWaiting() => _stream is not BlockingSocketStream plain || plain.HasPendingInput();

    /// <summary>A READ or WRITE of more than <see cref="LargeTransfer"/> bytes.</summary>
    private static bool IsLargeTransfer(in RequestHeader request) =>
        request.Length > LargeTransfer && request.Type is CommandType.Read or CommandType.Write;

    /// <summary>Above this a transfer's thread waits under SCHED_OTHER whatever the depth (<see cref="ScheduleForDepth"/>).</summary>
    internal const int LargeTransfer = 32 * 1024;

    /// <summary>Whether another thread should be woken to read next while this one runs the request it read. Not
    /// when the client has nothing else buffered or waiting in the socket and this is its only request in flight
    /// (queue depth 1): then it sends nothing until it has the reply, this thread is back for the turn first, and
    /// waking another only blocks it in recv, two context switches a request (and on a virtual machine, a halted
    /// vCPU brought back). TLS buffers input of its own, so any stream but the plain socket always hands on.
    /// The socket is asked (FIONREAD) only when no receive made while reading this request came back short of its
    /// buffer (<see cref="_drained"/>): a short recv(2) took all the socket held, microseconds ago, and at depth 1 the
    /// request's header always comes that way, so the question would cost a system call a request for the answer
    /// already known. A receive straight into a large write's buffer stops at the payload's end, and leaves the question open.</summary>
    private bool MoreInputLikely() =>
        _receiveEnd != _receiveStart
        || Volatile.Read(ref _inFlight) > 1
        || (!_drained && InputMayBeWaiting());

    /// <summary>Publishes that this thread runs a request with the read turn kept, for the watchdog (which the
    /// full fence of the exchange orders before its look at whether the watchdog sleeps).</summary>
    private void KeepTurn()
    {
        long now = Stopwatch.GetTimestamp();
        Volatile.Write(ref _lastKeptTurn, now);
        Interlocked.Exchange(ref _keptSince, now);
        _watchdog!.Wake();
    }

    /// <summary>When a turn was last kept (Stopwatch ticks, 0 if never).</summary>
    internal long LastKeptTurn => Volatile.Read(ref _lastKeptTurn);

    /// <summary>The watchdog's look: if the request run with the read turn kept started
    /// <paramref name="stallTicks"/> or more before <paramref name="now"/>, a sleeping thread is woken to read
    /// (once per such request). True when it did.</summary>
    internal bool KickIfStalled(long now, long stallTicks)
    {
        long since = Volatile.Read(ref _keptSince);
        if (since == 0 || now - since < stallTicks || Interlocked.CompareExchange(ref _keptSince, 0, since) != since)
        {
            return false;
        }

        // Free unless its keeper is already back: taking it and letting go wakes a sleeper, who reads next.
        if (_readLock.Sleepers != 0 && _readLock.TryEnter())
        {
            _readLock.Exit();
            return true;
        }

        return false;
    }

    // ---- reading (under _readLock) ------------------------------------------------------------------------

    /// <summary>Reads the next request into <paramref name="slot"/> and counts it in flight. False when the
    /// connection ends: NBD_CMD_DISC (<see cref="_clean"/>), end of stream, a protocol violation, or anything
    /// else that goes wrong here (a buffer that cannot be had, say): on a thread of our own an exception that
    /// escaped would end the process, so it ends this connection only.</summary>
    private bool TryReadRequest(RequestSlot slot)
    {
        try
        {
            return ReadRequest(slot);
        }
        catch (Exception e) when (e is IOException or ObjectDisposedException or NotSupportedException or InvalidOperationException)
        {
            if (!_broken)
            {
                _logger.ProtocolViolation(_id, e.Message);
            }

            return false;
        }
        catch (Exception e)
        {
            _logger.ConnectionFailed(_id, e);
            return false;
        }
    }

    private bool ReadRequest(RequestSlot slot)
    {
        _drained = false;
        if (_busyPollTicks != 0 && _receiveEnd == _receiveStart && _stream is BlockingSocketStream plain && _options.BusyPollGate())
        {
            BusyPoll(plain);
        }

        if (!ReceiveExact(_header))
        {
            return false;
        }

        var request = RequestHeader.Read(_header);
        if (!request.HasValidMagic)
        {
            _logger.ProtocolViolation(_id, $"bad request magic 0x{request.Magic:x8}");
            return false;
        }

        if (request.Type == CommandType.Disconnect)
        {
            _logger.ClientDisconnected(_id);
            _clean = true;
            return false;
        }

        slot.Request = request;
        slot.ExtentCount = 0;
        NbdError error;
        if (_shuttingDown)
        {
            error = NbdError.Shutdown;
            slot.ErrorMessage = ErrorMessages.ShuttingDown;
        }
        else
        {
            error = RequestValidator.Validate(request, _limits, out slot.ErrorMessage);
        }

        slot.Error = error;
        if (request.Type == CommandType.Write)
        {
            if (error == NbdError.None)
            {
                slot.EnsureBuffer();
                if (!ReceiveExact(slot.Data))
                {
                    return false;
                }
            }
            else if (!Skip(request.Length))
            {
                // The payload of a refused write is read and dropped so the stream stays in step.
                return false;
            }
        }

        Interlocked.Increment(ref _inFlight);
        Interlocked.Increment(ref _executing);
        return true;
    }

    /// <summary>With nothing buffered and a CPU free, polls the socket for up to
    /// <see cref="NbdServerOptions.BusyPollMicroseconds"/> before the receive blocks (see there), yielding the CPU
    /// between looks. Each look is a receive that does not block (MSG_DONTWAIT) into the receive buffer, so the
    /// look that finds input has also received it: one system call where FIONREAD and then recv(2) were two.</summary>
    private void BusyPoll(BlockingSocketStream plain)
    {
        BeginWaitingForInput();
        long deadline = Stopwatch.GetTimestamp() + _busyPollTicks;
        _receiveStart = _receiveEnd = 0;
        while (true)
        {
            int n = plain.ReadAvailable(Received(0, ReceiveBufferSize));
            if (n > 0)
            {
                _receiveEnd = n;
                _drained = n < ReceiveBufferSize;
                break;
            }

            if (Stopwatch.GetTimestamp() >= deadline)
            {
                break;
            }

            Thread.Yield();
        }

        Volatile.Write(ref _waitingForInput, 0);
    }

    /// <summary>Receives from the socket (which may block), after sending the replies left queued.</summary>
    private int ReceiveFromStream(Span<byte> destination)
    {
        BeginWaitingForInput();
        try
        {
            return _stream.Read(destination);
        }
        finally
        {
            Volatile.Write(ref _waitingForInput, 0);
        }
    }

    /// <summary>Receives into the (empty) receive buffer and notes whether that took all the socket held
    /// (<see cref="_drained"/>).</summary>
    private int ReceiveIntoBuffer()
    {
        int n = ReceiveFromStream(Received(0, ReceiveBufferSize));
        _drained = _plain && n < ReceiveBufferSize;
        return n;
    }

    /// <summary>Marks the reader as waiting for the client, then sends what is queued: a reply is only left in
    /// the queue while the reader is not waiting (see <see cref="Reply"/>), and the full fence of the exchange
    /// orders the mark before the look at the queue, so either the replier sees the mark or this sees its reply.</summary>
    private void BeginWaitingForInput()
    {
        Interlocked.Exchange(ref _waitingForInput, 1);
        SendQueued();
    }

    /// <summary>Fills <paramref name="destination"/> from the receive buffer and then the socket. What is left
    /// to receive, when 16 KiB or more, goes straight into the destination. False at end of stream.</summary>
    private bool ReceiveExact(Span<byte> destination)
    {
        int count = destination.Length;
        int buffered = _receiveEnd - _receiveStart;
        if (buffered >= count)
        {
            Received(_receiveStart, count).CopyTo(destination);
            _receiveStart += count;
            return true;
        }

        Received(_receiveStart, buffered).CopyTo(destination);
        int copied = buffered;
        _receiveStart = _receiveEnd = 0;
        while (copied < count)
        {
            int remaining = count - copied;
            if (remaining >= DirectReceiveSize)
            {
                int n = ReceiveFromStream(destination[copied..]);
                if (n == 0)
                {
                    return false;
                }

                _drained = false;
                copied += n;
            }
            else
            {
                int n = ReceiveIntoBuffer();
                if (n == 0)
                {
                    return false;
                }

                int take = Math.Min(n, remaining);
                Received(0, take).CopyTo(destination[copied..]);
                copied += take;
                _receiveStart = take;
                _receiveEnd = n;
            }
        }

        return true;
    }

    /// <summary>Reads and drops <paramref name="length"/> bytes through the receive buffer.</summary>
    private bool Skip(uint length)
    {
        while (length > 0)
        {
            if (_receiveEnd == _receiveStart)
            {
                int n = ReceiveIntoBuffer();
                if (n == 0)
                {
                    return false;
                }

                _receiveStart = 0;
                _receiveEnd = n;
            }

            int take = (int)Math.Min(length, (uint)(_receiveEnd - _receiveStart));
            _receiveStart += take;
            length -= (uint)take;
        }

        return true;
    }

    // ---- device work (reader or worker) -------------------------------------------------------------------

    /// <summary>Runs a validated request against the device. Every offset and length was checked by
    /// <see cref="RequestValidator"/>, so the casts below cannot overflow.</summary>
    public void Execute(RequestSlot slot)
    {
        ref readonly RequestHeader request = ref slot.Request;
        long offset = (long)request.Offset;
        long length = request.Length;
        bool fua = (request.Flags & CommandFlags.Fua) != 0;
        NbdError error;
        try
        {
            switch (request.Type)
            {
                case CommandType.Read:
                    slot.EnsureBuffer();
                    error = _limits.StructuredReplies && (request.Flags & CommandFlags.DontFragment) == 0
                        ? ReadSparse(slot, offset, length)
                        : _device.Read(offset, slot.Data);
                    break;
                case CommandType.Write:
                    error = _device.Write(offset, slot.Data, fua);
                    break;
                case CommandType.Flush:
                    error = _device.Flush();
                    break;
                case CommandType.Trim:
                    error = _device.Trim(offset, length);
                    error = error == NbdError.None && fua ? _device.Flush() : error;
                    break;
                case CommandType.WriteZeroes:
                    error = _device.WriteZeroes(offset, length, (request.Flags & CommandFlags.NoHole) != 0,
                        (request.Flags & CommandFlags.FastZero) != 0);
                    error = error == NbdError.None && fua ? _device.Flush() : error;
                    break;
                case CommandType.BlockStatus:
                    int capacity = (request.Flags & CommandFlags.RequestOne) != 0 ? 1 : RequestSlot.ExtentCapacity;
                    slot.ExtentCount = GetExtents(offset, length, slot.Extents.AsSpan(0, capacity), fillRemainder: false);
                    error = NbdError.None;
                    break;
                default:
                    // NBD_CMD_CACHE: the device already lives in memory; there is nothing to prefetch.
                    error = NbdError.None;
                    break;
            }
        }
        catch (Exception e)
        {
            // IBlockDevice reports errors as values; an exception is a bug, but it must not kill the connection.
            _logger.DeviceThrew(_id, request.Type, e);
            error = NbdError.IO;
        }

        if (error != NbdError.None)
        {
            slot.Error = error;
            slot.ErrorMessage = ErrorMessages.DeviceFailed;
        }

        Reply(slot);
    }

    /// <summary>Reads only the parts that are not known to be zero; the zero extents become OFFSET_HOLE chunks.</summary>
    private NbdError ReadSparse(RequestSlot slot, long offset, long length)
    {
        int count = GetExtents(offset, length, slot.Extents, fillRemainder: true);
        slot.ExtentCount = count;
        Span<byte> data = slot.Data;
        long position = 0;
        for (int i = 0; i < count; i++)
        {
            BlockExtent extent = slot.Extents[i];
            if ((extent.Flags & ExtentFlags.Zero) == 0)
            {
                NbdError error = _device.Read(offset + position, data.Slice((int)position, (int)extent.Length));
                if (error != NbdError.None)
                {
                    return error;
                }
            }

            position += extent.Length;
        }

        return NbdError.None;
    }

    /// <summary>Asks the device for extents and makes them safe to put on the wire: no empty extents, none
    /// reaching past the request. With <paramref name="fillRemainder"/> the last extent is stretched (as data)
    /// to cover the whole request; otherwise a short answer stays short, as BLOCK_STATUS allows.</summary>
    private int GetExtents(long offset, long length, Span<BlockExtent> extents, bool fillRemainder)
    {
        int reported = _device.GetExtents(offset, length, fillRemainder ? extents[..^1] : extents);
        int count = 0;
        long covered = 0;
        for (int i = 0; i < reported && covered < length; i++)
        {
            BlockExtent extent = extents[i];
            if (extent.Length <= 0)
            {
                break;
            }

            long take = Math.Min(extent.Length, length - covered);
            extents[count++] = new BlockExtent(take, extent.Flags & (ExtentFlags.Hole | ExtentFlags.Zero));
            covered += take;
        }

        if (count == 0)
        {
            // Status 0 ("allocated, contents unknown") is always a truthful answer.
            extents[count++] = new BlockExtent(length, ExtentFlags.Allocated);
            covered = length;
        }

        if (fillRemainder && covered < length)
        {
            extents[count++] = new BlockExtent(length - covered, ExtentFlags.Allocated);
        }

        return count;
    }

    // ---- replies ------------------------------------------------------------------------------------------

    /// <summary>
    /// Answers the slot's request. A reply that fits (all but large reads and reads with
    /// holes) is copied into the reply queue and the thread goes back to reading at once; whoever holds the send
    /// turn sends everything queued in one system call. So no thread sleeps waiting to send, even while the
    /// sender is preempted (each send wakes the client, which often takes the sender's CPU), and several replies
    /// cost the client one wake-up. Larger replies are sent directly by their own thread, after the queue.
    ///
    /// While another request of the connection is still running (<see cref="_executing"/>) and the reader is not
    /// waiting for the client, a queued reply is not sent yet: the last of those requests to finish sends them all
    /// (at queue depth 32 one send(2) then carries several replies, and the client wakes once for them). It waits
    /// for at most <see cref="BatchReplies"/> replies, and the reader sends the queue before it polls or blocks for
    /// input, so a reply is never held while the server waits on a client that is waiting for it, nor behind a
    /// request that takes long while others finish. At depth 1 nothing else runs, and every reply goes at once.
    /// </summary>
    private void Reply(RequestSlot slot)
    {
        int size = WholeReplySize(slot);
        if (size >= 0 && TryQueue(slot, size, out int batch))
        {
            if (Interlocked.Decrement(ref _executing) > 0 && batch < BatchReplies && Volatile.Read(ref _waitingForInput) == 0)
            {
                return;
            }

            SendQueued();
            return;
        }

        _sendLock.Enter();
        try
        {
            SendQueuedTurnHeld();
            Interlocked.Increment(ref _sending);
            if (!_broken)
            {
                try
                {
                    if (size >= 0)
                    {
                        EnsureSendSpace(size);
                        _sendCount += WriteWholeReply(slot, ToSend(_sendCount, size));
                    }
                    else
                    {
                        WriteReadReply(slot);
                    }

                    FlushSend();
                }
                catch (Exception e)
                {
                    _sendCount = 0;
                    Break(e);
                }
            }
        }
        finally
        {
            _sendLock.Exit();
        }

        // In flight first: a look between the two then still finds the reply among those being written (and asks the
        // socket), never counted in flight with its write done.
        Interlocked.Decrement(ref _inFlight);
        Interlocked.Decrement(ref _sending);
        Interlocked.Decrement(ref _executing);
        SendQueued();
    }

    /// <summary>Copies the whole reply to the end of the queue; false when the queue has no room for it.</summary>
    private bool TryQueue(RequestSlot slot, int size, out int batch)
    {
        batch = 0;
        _queueLock.Enter();
        try
        {
            if (QueueSize - _queued < size)
            {
                return false;
            }

            _queued += WriteWholeReply(slot, Queued(_queueStart, _queued, size));
            batch = ++_queuedReplies;
            return true;
        }
        finally
        {
            _queueLock.Exit();
        }
    }

    /// <summary>Sends what is queued unless another thread holds the send turn. That thread looks at the queue
    /// again after letting go of the turn (below, or in <see cref="Reply"/>), so a reply queued while it sends
    /// is never left behind: either this thread gets the turn, or the holder sees the reply.</summary>
    private void SendQueued()
    {
        while (Volatile.Read(ref _queued) != 0 && _sendLock.TryEnter())
        {
            try
            {
                SendQueuedTurnHeld();
            }
            finally
            {
                _sendLock.Exit();
            }
        }
    }

    /// <summary>Takes the send turn, waiting for it if need be, and sends what is queued.</summary>
    private void SendQueuedWaiting()
    {
        _sendLock.Enter();
        try
        {
            SendQueuedTurnHeld();
        }
        finally
        {
            _sendLock.Exit();
        }

        SendQueued();
    }

    /// <summary>Swaps the queue for the empty spare and sends it; the send turn is held. The replies count as in
    /// flight until they are sent (or dropped because the connection broke).</summary>
    private void SendQueuedTurnHeld()
    {
        _queueLock.Enter();
        int batch = _queueStart;
        int count = _queued;
        int replies = _queuedReplies;
        _queueStart = _spareQueueStart;
        _spareQueueStart = batch;
        _queued = 0;
        _queuedReplies = 0;
        _queueLock.Exit();
        if (count == 0)
        {
            return;
        }

        Interlocked.Add(ref _sending, replies);
        try
        {
            if (!_broken)
            {
                FlushSend();
                ReadOnlySpan<byte> sent = Queued(batch, 0, count);
                _stream.Write(sent);
                _options.RepliesWritten?.Invoke(sent);
            }
        }
        catch (Exception e)
        {
            _sendCount = 0;
            Break(e);
        }
        finally
        {
            Interlocked.Add(ref _inFlight, -replies);
            Interlocked.Add(ref _sending, -replies);
        }
    }

    private void Break(Exception e)
    {
        if (!_broken)
        {
            _logger.ProtocolViolation(_id, "sending a reply failed: " + e.Message);
        }

        // Stop the reader too: shutting the socket down ends its blocked receive.
        Abort();
    }

    /// <summary>The size of the whole reply when it is small enough to be copied into the queue, else -1: reads
    /// of more than <see cref="QueuedDataLimit"/> and structured reads with holes (several chunks) are sent
    /// straight from the slot buffer.</summary>
    private int WholeReplySize(RequestSlot slot)
    {
        bool structured = _limits.StructuredReplies;
        if (slot.Error != NbdError.None)
        {
            return structured ? StructuredReply.HeaderSize + 6 + (slot.ErrorMessage?.Length ?? 0) : SimpleReply.Size;
        }

        switch (slot.Request.Type)
        {
            case CommandType.Read:
                int length = (int)slot.Request.Length;
                if (length > QueuedDataLimit || (structured && !IsAllData(slot)))
                {
                    return -1;
                }

                return (structured ? StructuredReply.OffsetDataPrefixSize : SimpleReply.Size) + length;
            case CommandType.BlockStatus:
                return StructuredReply.BlockStatusPrefixSize + (slot.ExtentCount * StructuredReply.BlockStatusDescriptorSize);
            default:
                // A success without payload is a simple reply even when structured replies were negotiated (the
                // spec allows either; nbdkit does the same): libnbd reads 16 bytes first and a structured header
                // costs it a second recv for the last 4, a system call per request for the client.
                return SimpleReply.Size;
        }
    }

    /// <summary>Writes the whole reply (<see cref="WholeReplySize"/> bytes, READ data copied) into
    /// <paramref name="destination"/>; returns its length.</summary>
    private int WriteWholeReply(RequestSlot slot, Span<byte> destination)
    {
        ulong handle = slot.Request.Handle;
        bool structured = _limits.StructuredReplies;
        if (slot.Error != NbdError.None)
        {
            return structured
                ? StructuredReply.WriteError(destination, handle, slot.Error, slot.ErrorMessage ?? [])
                : SimpleReply.Write(destination, slot.Error, handle);
        }

        switch (slot.Request.Type)
        {
            case CommandType.Read:
                int n = structured
                    ? StructuredReply.WriteOffsetDataPrefix(destination, StructuredReplyFlags.Done, handle, slot.Request.Offset, (int)slot.Request.Length)
                    : SimpleReply.Write(destination, NbdError.None, handle);
                slot.Data.CopyTo(destination[n..]);
                return n + slot.Data.Length;
            case CommandType.BlockStatus:
                int count = slot.ExtentCount;
                int written = StructuredReply.WriteBlockStatusPrefix(destination, StructuredReplyFlags.Done, handle, NbdHandshake.BaseAllocationContextId, count);
                for (int i = 0; i < count; i++)
                {
                    BlockExtent extent = slot.Extents[i];
                    written += StructuredReply.WriteBlockStatusDescriptor(destination[written..], (uint)extent.Length, extent.Flags);
                }

                return written;
            default:
                return SimpleReply.Write(destination, NbdError.None, handle);
        }
    }

    private void WriteReadReply(RequestSlot slot)
    {
        ulong handle = slot.Request.Handle;
        int length = (int)slot.Request.Length;
        Span<byte> buffer = slot.Buffer.Span(0, RequestSlot.HeaderRoom + length);
        if (!_limits.StructuredReplies)
        {
            int start = RequestSlot.HeaderRoom - SimpleReply.Size;
            SimpleReply.Write(buffer[start..], NbdError.None, handle);
            SendDirect(buffer.Slice(start, SimpleReply.Size + length));
            return;
        }

        if (IsAllData(slot))
        {
            // One OFFSET_DATA chunk (always so with DF), its header written just before the data.
            int start = RequestSlot.HeaderRoom - StructuredReply.OffsetDataPrefixSize;
            StructuredReply.WriteOffsetDataPrefix(buffer[start..], StructuredReplyFlags.Done, handle, slot.Request.Offset, length);
            SendDirect(buffer.Slice(start, StructuredReply.OffsetDataPrefixSize + length));
            return;
        }

        long position = 0;
        for (int i = 0; i < slot.ExtentCount; i++)
        {
            BlockExtent extent = slot.Extents[i];
            var flags = i == slot.ExtentCount - 1 ? StructuredReplyFlags.Done : StructuredReplyFlags.None;
            ulong chunkOffset = slot.Request.Offset + (ulong)position;
            if ((extent.Flags & ExtentFlags.Zero) != 0)
            {
                EnsureSendSpace(StructuredReply.OffsetHoleSize);
                _sendCount += StructuredReply.WriteOffsetHole(ToSend(_sendCount, SendBufferSize - _sendCount), flags, handle, chunkOffset, (uint)extent.Length);
            }
            else
            {
                EnsureSendSpace(StructuredReply.OffsetDataPrefixSize);
                _sendCount += StructuredReply.WriteOffsetDataPrefix(ToSend(_sendCount, SendBufferSize - _sendCount), flags, handle, chunkOffset, (int)extent.Length);
                SendDirect(buffer.Slice(RequestSlot.HeaderRoom + (int)position, (int)extent.Length));
            }

            position += extent.Length;
        }
    }

    /// <summary>True for DF and simple reads (no extents looked up) and for reads with no zero extent.</summary>
    private static bool IsAllData(RequestSlot slot)
    {
        for (int i = 0; i < slot.ExtentCount; i++)
        {
            if ((slot.Extents[i].Flags & ExtentFlags.Zero) != 0)
            {
                return false;
            }
        }

        return true;
    }

    private void EnsureSendSpace(int size)
    {
        if (SendBufferSize - _sendCount < size)
        {
            FlushSend();
        }
    }

    /// <summary>Sends what is batched, then <paramref name="data"/> without copying it.</summary>
    private void SendDirect(ReadOnlySpan<byte> data)
    {
        FlushSend();
        _stream.Write(data);
    }

    private void FlushSend()
    {
        if (_sendCount > 0)
        {
            int count = _sendCount;
            _sendCount = 0;
            _stream.Write(ToSend(0, count));
        }
    }

    /// <summary>Bytes [start, start + length) of the receive buffer (checked against its bounds).</summary>
    private Span<byte> Received(int start, int length) => _buffers.Span(0, ReceiveBufferSize).Slice(start, length);

    /// <summary>Bytes [start, start + length) of the send buffer (checked against its bounds).</summary>
    private Span<byte> ToSend(int start, int length) => _buffers.Span(SendStart, SendBufferSize).Slice(start, length);

    /// <summary>Bytes [start, start + length) of the reply queue at <paramref name="queue"/> (the queue or its spare;
    /// checked against its bounds).</summary>
    private Span<byte> Queued(int queue, int start, int length) => _buffers.Span(queue, QueueSize).Slice(start, length);
}
