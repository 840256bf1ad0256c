using System.Buffers;
using System.Net.Security;
using System.Runtime.CompilerServices;
using System.Threading.Channels;
using Microsoft.Extensions.Logging;
using Nbd.Devices;
using Nbd.Logging;
using Nbd.Protocol;

namespace Nbd.Sessions;

/// <summary>
/// The transmission phase of one connection.
///
/// Three parts, joined by two channels of <see cref="RequestSlot"/>s:
///   reader loop  -- reads a request header (and a WRITE's payload straight into the slot's rented buffer),
///                   validates it (<see cref="RequestValidator"/>), and queues the slot on the thread pool; a
///                   refused request goes straight to the completed channel without touching the device.
///   Execute      -- on a pool thread: the synchronous device call, then the slot goes to the completed channel.
///   writer loop  -- the only writer of the socket: serializes replies in completion order (any order is
///                   allowed), batching small ones into one send; READ data goes from the slot buffer to the
///                   socket with its header written in front of it, so data is never copied twice.
/// A slot returns to the free channel after its reply is sent. The reader takes a free slot before reading a
/// request, so at most MaxInFlightPerConnection requests are in flight and a fast client is slowed by the
/// socket (back-pressure), not buffered.
///
/// Lifetime: <see cref="_pending"/> counts the reader plus every slot between dispatch and reply. The reader
/// stops on NBD_CMD_DISC, end of stream or a protocol violation, and drops its count; whoever brings the count
/// to zero completes the completed channel, the writer drains it and ends, and the connection closes. So DISC
/// finishes outstanding requests first, as the spec requires.
///
/// No per-request allocation: the channels are used with single readers and without cancellation tokens (so
/// they reuse their waiter objects), socket I/O goes through ValueTask-returning stream calls, and the async
/// helpers use pooled state machines.
/// </summary>
internal sealed class NbdSession
{
    private const int ReceiveBufferSize = 16 * 1024;
    private const int SendBufferSize = 64 * 1024;

    private readonly Stream _stream;
    private readonly IBlockDevice _device;
    private readonly ILogger _logger;
    private readonly long _id;
    private readonly ConnectionLimits _limits;
    private readonly Channel<RequestSlot> _free;
    private readonly Channel<RequestSlot> _completed;
    private readonly byte[] _header = new byte[RequestHeader.Size];
    private readonly byte[] _receiveBuffer = new byte[ReceiveBufferSize];
    private readonly byte[] _sendBuffer = new byte[SendBufferSize];
    private int _receiveStart;
    private int _receiveEnd;
    private int _sendCount;
    private int _pending = 1;
    private volatile bool _shuttingDown;
    private volatile bool _broken;

    public NbdSession(HandshakeResult handshake, NbdServerOptions options, ILogger logger, long id)
    {
        _stream = handshake.Stream;
        _device = handshake.Export.Device;
        _logger = logger;
        _id = id;
        _limits = new ConnectionLimits(
            _device.Size,
            _device.IsReadOnly,
            Math.Max(1, _device.MinimumBlockSize),
            options.MaxPayload,
            handshake.StructuredReplies,
            handshake.BaseAllocation,
            _device.SupportsFastZero);

        var single = new UnboundedChannelOptions { SingleReader = true, SingleWriter = false };
        _free = Channel.CreateUnbounded<RequestSlot>(single);
        _completed = Channel.CreateUnbounded<RequestSlot>(single);
        for (int i = 0; i < options.MaxInFlightPerConnection; i++)
        {
            _free.Writer.TryWrite(new RequestSlot(this));
        }
    }

    /// <summary>Requests dispatched and not yet answered.</summary>
    public int InFlight => Math.Max(0, Volatile.Read(ref _pending) - 1);

    /// <summary>From now on requests are answered with ESHUTDOWN; those already in flight finish normally.</summary>
    public void BeginShutdown() => _shuttingDown = true;

    /// <summary>Hard disconnect: closes the socket under both loops.</summary>
    public void Abort()
    {
        _broken = true;
        _stream.Dispose();
    }

    public async Task RunAsync()
    {
        Task writer = Task.Run(WriterLoopAsync);
        bool clean = false;
        try
        {
            clean = await ReaderLoopAsync().ConfigureAwait(false);
        }
        catch (Exception e) when (e is IOException or ObjectDisposedException or ChannelClosedException or System.Net.Sockets.SocketException)
        {
            if (!_broken)
            {
                _logger.ProtocolViolation(_id, e.Message);
            }
        }
        finally
        {
            ReleasePending();
        }

        await writer.ConfigureAwait(false);
        if (clean && !_broken && _stream is SslStream ssl)
        {
            try
            {
                await ssl.ShutdownAsync().ConfigureAwait(false);
            }
            catch (Exception e) when (e is IOException or ObjectDisposedException)
            {
                // The client may already be gone; the socket is closed next anyway.
            }
        }

        _stream.Dispose();
    }

    // ---- reader -------------------------------------------------------------------------------------------

    /// <summary>Returns true after NBD_CMD_DISC, false when the connection ended any other way.</summary>
    private async Task<bool> ReaderLoopAsync()
    {
        ChannelReader<RequestSlot> free = _free.Reader;
        while (true)
        {
            if (!free.TryRead(out RequestSlot? slot))
            {
                slot = await free.ReadAsync().ConfigureAwait(false);
            }

            if (!await ReceiveExactAsync(_header).ConfigureAwait(false))
            {
                _free.Writer.TryWrite(slot);
                return false;
            }

            var request = RequestHeader.Read(_header);
            if (!request.HasValidMagic)
            {
                _logger.ProtocolViolation(_id, $"bad request magic 0x{request.Magic:x8}");
                _free.Writer.TryWrite(slot);
                return false;
            }

            if (request.Type == CommandType.Disconnect)
            {
                _logger.ClientDisconnected(_id);
                _free.Writer.TryWrite(slot);
                return true;
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
                    slot.Buffer = ArrayPool<byte>.Shared.Rent(RequestSlot.HeaderRoom + (int)request.Length);
                    if (!await ReceiveExactAsync(slot.Buffer.AsMemory(RequestSlot.HeaderRoom, (int)request.Length)).ConfigureAwait(false))
                    {
                        Recycle(slot);
                        return false;
                    }
                }
                else if (!await SkipAsync(request.Length).ConfigureAwait(false))
                {
                    // The payload of a refused write is read and dropped so the stream stays in step.
                    Recycle(slot);
                    return false;
                }
            }

            Interlocked.Increment(ref _pending);
            if (error == NbdError.None)
            {
                ThreadPool.UnsafeQueueUserWorkItem(slot, preferLocal: false);
            }
            else
            {
                _completed.Writer.TryWrite(slot);
            }
        }
    }

    /// <summary>Fills <paramref name="destination"/> from the receive buffer and then the socket. Payloads at
    /// least as large as the buffer are read straight into the destination. False at end of stream.</summary>
    private ValueTask<bool> ReceiveExactAsync(Memory<byte> destination)
    {
        int buffered = _receiveEnd - _receiveStart;
        if (buffered >= destination.Length)
        {
            _receiveBuffer.AsSpan(_receiveStart, destination.Length).CopyTo(destination.Span);
            _receiveStart += destination.Length;
            return new ValueTask<bool>(true);
        }

        return ReceiveSlowAsync(destination);
    }

    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
    private async ValueTask<bool> ReceiveSlowAsync(Memory<byte> destination)
    {
        int copied = _receiveEnd - _receiveStart;
        _receiveBuffer.AsSpan(_receiveStart, copied).CopyTo(destination.Span);
        _receiveStart = _receiveEnd = 0;
        while (copied < destination.Length)
        {
            int remaining = destination.Length - copied;
            if (remaining >= _receiveBuffer.Length)
            {
                int n = await _stream.ReadAsync(destination[copied..]).ConfigureAwait(false);
                if (n == 0)
                {
                    return false;
                }

                copied += n;
            }
            else
            {
                int n = await _stream.ReadAsync(_receiveBuffer).ConfigureAwait(false);
                if (n == 0)
                {
                    return false;
                }

                int take = Math.Min(n, remaining);
                _receiveBuffer.AsSpan(0, take).CopyTo(destination.Span[copied..]);
                copied += take;
                _receiveStart = take;
                _receiveEnd = n;
            }
        }

        return true;
    }

    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
    private async ValueTask<bool> SkipAsync(uint length)
    {
        while (length > 0)
        {
            int chunk = (int)Math.Min(length, (uint)_receiveBuffer.Length);
            byte[] scratch = ArrayPool<byte>.Shared.Rent(chunk);
            bool ok = await ReceiveExactAsync(scratch.AsMemory(0, chunk)).ConfigureAwait(false);
            ArrayPool<byte>.Shared.Return(scratch);
            if (!ok)
            {
                return false;
            }

            length -= (uint)chunk;
        }

        return true;
    }

    // ---- device work (thread pool) ------------------------------------------------------------------------

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
                    slot.Buffer = ArrayPool<byte>.Shared.Rent(RequestSlot.HeaderRoom + (int)length);
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

        _completed.Writer.TryWrite(slot);
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

    // ---- writer -------------------------------------------------------------------------------------------

    private async Task WriterLoopAsync()
    {
        ChannelReader<RequestSlot> completed = _completed.Reader;
        while (await completed.WaitToReadAsync().ConfigureAwait(false))
        {
            while (completed.TryRead(out RequestSlot? slot))
            {
                if (!_broken)
                {
                    try
                    {
                        await WriteReplyAsync(slot).ConfigureAwait(false);
                    }
                    catch (Exception e)
                    {
                        // Whatever went wrong, the writer must keep recycling slots or the reader would wait forever.
                        Break(e);
                    }
                }

                Recycle(slot);
                ReleasePending();
            }

            if (!_broken)
            {
                try
                {
                    await FlushAsync().ConfigureAwait(false);
                }
                catch (Exception e)
                {
                    Break(e);
                }
            }
        }
    }

    private void Break(Exception e)
    {
        if (!_broken)
        {
            _logger.ProtocolViolation(_id, "sending a reply failed: " + e.Message);
        }

        // Stop the reader too: closing the stream fails its pending receive.
        Abort();
    }

    private void Recycle(RequestSlot slot)
    {
        if (slot.Buffer is { } buffer)
        {
            slot.Buffer = null;
            ArrayPool<byte>.Shared.Return(buffer);
        }

        _free.Writer.TryWrite(slot);
    }

    private void ReleasePending()
    {
        if (Interlocked.Decrement(ref _pending) == 0)
        {
            _completed.Writer.TryComplete();
        }
    }

    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    private async ValueTask WriteReplyAsync(RequestSlot slot)
    {
        ulong handle = slot.Request.Handle;
        if (slot.Error != NbdError.None)
        {
            byte[] message = slot.ErrorMessage ?? [];
            await EnsureSendSpaceAsync(StructuredReply.HeaderSize + 6 + message.Length).ConfigureAwait(false);
            _sendCount += _limits.StructuredReplies
                ? StructuredReply.WriteError(_sendBuffer.AsSpan(_sendCount), handle, slot.Error, message)
                : SimpleReply.Write(_sendBuffer.AsSpan(_sendCount), slot.Error, handle);
            return;
        }

        switch (slot.Request.Type)
        {
            case CommandType.Read:
                await WriteReadReplyAsync(slot).ConfigureAwait(false);
                break;
            case CommandType.BlockStatus:
                int count = slot.ExtentCount;
                await EnsureSendSpaceAsync(StructuredReply.BlockStatusPrefixSize + (count * StructuredReply.BlockStatusDescriptorSize)).ConfigureAwait(false);
                Span<byte> span = _sendBuffer.AsSpan(_sendCount);
                int n = StructuredReply.WriteBlockStatusPrefix(span, StructuredReplyFlags.Done, handle, NbdHandshake.BaseAllocationContextId, count);
                for (int i = 0; i < count; i++)
                {
                    BlockExtent extent = slot.Extents[i];
                    n += StructuredReply.WriteBlockStatusDescriptor(span[n..], (uint)extent.Length, extent.Flags);
                }

                _sendCount += n;
                break;
            default:
                await EnsureSendSpaceAsync(StructuredReply.HeaderSize).ConfigureAwait(false);
                _sendCount += _limits.StructuredReplies
                    ? StructuredReply.WriteDone(_sendBuffer.AsSpan(_sendCount), handle)
                    : SimpleReply.Write(_sendBuffer.AsSpan(_sendCount), NbdError.None, handle);
                break;
        }
    }

    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    private async ValueTask WriteReadReplyAsync(RequestSlot slot)
    {
        byte[] buffer = slot.Buffer!;
        ulong handle = slot.Request.Handle;
        int length = (int)slot.Request.Length;
        if (!_limits.StructuredReplies)
        {
            int start = RequestSlot.HeaderRoom - SimpleReply.Size;
            SimpleReply.Write(buffer.AsSpan(start), NbdError.None, handle);
            await SendDirectAsync(buffer.AsMemory(start, SimpleReply.Size + length)).ConfigureAwait(false);
            return;
        }

        if (IsAllData(slot))
        {
            // One OFFSET_DATA chunk (always so with DF), its header written just before the data.
            int start = RequestSlot.HeaderRoom - StructuredReply.OffsetDataPrefixSize;
            StructuredReply.WriteOffsetDataPrefix(buffer.AsSpan(start), StructuredReplyFlags.Done, handle, slot.Request.Offset, length);
            await SendDirectAsync(buffer.AsMemory(start, StructuredReply.OffsetDataPrefixSize + length)).ConfigureAwait(false);
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
                await EnsureSendSpaceAsync(StructuredReply.OffsetHoleSize).ConfigureAwait(false);
                _sendCount += StructuredReply.WriteOffsetHole(_sendBuffer.AsSpan(_sendCount), flags, handle, chunkOffset, (uint)extent.Length);
            }
            else
            {
                await EnsureSendSpaceAsync(StructuredReply.OffsetDataPrefixSize).ConfigureAwait(false);
                _sendCount += StructuredReply.WriteOffsetDataPrefix(_sendBuffer.AsSpan(_sendCount), flags, handle, chunkOffset, (int)extent.Length);
                await SendDirectAsync(buffer.AsMemory(RequestSlot.HeaderRoom + (int)position, (int)extent.Length)).ConfigureAwait(false);
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

    private ValueTask EnsureSendSpaceAsync(int size) =>
        _sendBuffer.Length - _sendCount >= size ? ValueTask.CompletedTask : FlushAsync();

    /// <summary>Sends what is batched, then <paramref name="data"/> without copying it.</summary>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    private async ValueTask SendDirectAsync(ReadOnlyMemory<byte> data)
    {
        await FlushAsync().ConfigureAwait(false);
        await _stream.WriteAsync(data).ConfigureAwait(false);
    }

    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    private async ValueTask FlushAsync()
    {
        if (_sendCount > 0)
        {
            int count = _sendCount;
            _sendCount = 0;
            await _stream.WriteAsync(_sendBuffer.AsMemory(0, count)).ConfigureAwait(false);
        }
    }
}
