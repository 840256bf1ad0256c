using System.Buffers;
using System.Buffers.Binary;
using System.Net.Security;
using System.Numerics;
using System.Security.Cryptography.X509Certificates;
using System.Text;
using Microsoft.Extensions.Logging;
using Nbd.Logging;
using Nbd.Native;
using Nbd.Protocol;

namespace Nbd.Sessions;

/// <summary>
/// Fixed newstyle option haggling for one connection, up to NBD_OPT_GO / NBD_OPT_EXPORT_NAME.
/// Modelled on nbdkit's protocol-handshake-newstyle.c: every option payload is length-checked before it is
/// parsed, a malformed option gets an error reply and haggling goes on, and only what the spec says cannot
/// be answered (bad magic, unknown client flags, a failed EXPORT_NAME) drops the connection.
/// Small allocations here do not matter (once per connection); its 64 KiB buffer is mapped, not allocated (see _buffer).
/// </summary>
internal sealed class NbdHandshake
{
    /// <summary>The id of base:allocation in NBD_REP_META_CONTEXT and BLOCK_STATUS chunks.</summary>
    public const uint BaseAllocationContextId = 1;

    private static readonly UTF8Encoding StrictUtf8 = new(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: true);

    private readonly NbdServer _server;
    private readonly NbdServerOptions _options;
    private readonly ILogger _logger;
    private readonly long _id;
    private readonly bool _simpleRepliesOnly;
    // Mapped for the handshake and unmapped at its end: a managed array per connection stayed resident until a full GC.
    private readonly MappedBuffer _buffer = new();
    private Stream _stream;
    private bool _noZeroes;
    private bool _fixedNewstyle;
    private readonly NbdTlsMode _tlsMode;
    private bool _tls;
    private bool _structured;
    private string? _metaContextExport;
    private bool _baseAllocation;

    /// <param name="tlsMode">This connection's TLS policy: the options' for a listener's, off for the host's own.</param>
    public NbdHandshake(NbdServer server, NbdServerOptions options, ILogger logger, long id, Stream stream, bool simpleRepliesOnly, NbdTlsMode tlsMode)
    {
        _tlsMode = tlsMode;
        _server = server;
        _options = options;
        _logger = logger;
        _id = id;
        _stream = stream;
        _simpleRepliesOnly = simpleRepliesOnly;
    }

    private static ReadOnlySpan<byte> BaseAllocation => "base:allocation"u8;

    private static ReadOnlySpan<byte> BaseNamespace => "base:"u8;

    /// <summary>Returns the negotiated result, or null when the connection is to be closed; then a TLS stream
    /// STARTTLS made is disposed here (the caller holds only the socket's), not left to the finalizer with its
    /// OpenSSL state.</summary>
    public async Task<HandshakeResult?> RunAsync(CancellationToken cancellationToken)
    {
        HandshakeResult? result = null;
        _buffer.Ensure(ProtocolLimits.MaxOptionLength);
        try
        {
            result = await NegotiateAsync(cancellationToken).ConfigureAwait(false);
            return result;
        }
        catch (OperationCanceledException)
        {
            _logger.HandshakeFailed(_id, "timed out or server stopping");
        }
        catch (EndOfStreamException)
        {
            _logger.HandshakeFailed(_id, "client closed the connection");
        }
        catch (IOException e)
        {
            _logger.HandshakeFailed(_id, e.Message);
        }
        catch (System.Security.Authentication.AuthenticationException e)
        {
            _logger.HandshakeFailed(_id, "TLS handshake failed: " + e.Message);
        }
        catch (ObjectDisposedException)
        {
            _logger.HandshakeFailed(_id, "connection closed");
        }
        finally
        {
            if (result is null && _stream is SslStream ssl)
            {
                ssl.Dispose();
            }

            // Every read and write of the handshake has completed: they are awaited, and complete synchronously.
            _buffer.Unmap();
        }

        return null;
    }

    private async Task<HandshakeResult?> NegotiateAsync(CancellationToken ct)
    {
        ServerGreeting.Write(_buffer.GetSpan(), HandshakeFlags.FixedNewstyle | HandshakeFlags.NoZeroes);
        await _stream.WriteAsync(_buffer.Memory[..ServerGreeting.Length], ct).ConfigureAwait(false);

        await _stream.ReadExactlyAsync(_buffer.Memory[..4], ct).ConfigureAwait(false);
        var clientFlags = (ClientFlags)BinaryPrimitives.ReadUInt32BigEndian(_buffer.GetSpan());
        if ((clientFlags & ~(ClientFlags.FixedNewstyle | ClientFlags.NoZeroes)) != 0)
        {
            return Drop($"unknown client flags 0x{(uint)clientFlags:x}");
        }

        // A client without C_FIXED_NEWSTYLE may still be served (doc/proto.md allows it), just never with TLS.
        if ((clientFlags & ClientFlags.FixedNewstyle) == 0 && _tlsMode == NbdTlsMode.Required)
        {
            return Drop("client does not speak fixed newstyle, so it cannot start TLS");
        }

        _noZeroes = (clientFlags & ClientFlags.NoZeroes) != 0;
        _fixedNewstyle = (clientFlags & ClientFlags.FixedNewstyle) != 0;

        while (true)
        {
            await _stream.ReadExactlyAsync(_buffer.Memory[..OptionRequestHeader.Size], ct).ConfigureAwait(false);
            var header = OptionRequestHeader.Read(_buffer.GetSpan());
            if (!header.HasValidMagic)
            {
                return Drop($"bad option magic 0x{header.Magic:x16}");
            }

            uint option = header.Option;
            if (option == (uint)OptionType.SetMetaContext)
            {
                // proto.md: SET replaces the selection "including when this command fails", however it fails (too
                // large, refused for TLS or shutdown, malformed): a failed SET leaves none.
                _baseAllocation = false;
                _metaContextExport = null;
            }

            // FORCEDTLS: every option but STARTTLS and ABORT gets ERR_TLS_REQD before TLS, whatever its payload.
            bool tlsFirst = _tlsMode == NbdTlsMode.Required && !_tls
                && option is not ((uint)OptionType.StartTls) and not ((uint)OptionType.Abort);
            if (header.Length > ProtocolLimits.MaxOptionLength)
            {
                if (header.Length > ProtocolLimits.MaxSkippedOptionLength || option == (uint)OptionType.ExportName)
                {
                    return Drop($"option {option} payload of {header.Length} bytes");
                }

                await SkipAsync(header.Length, ct).ConfigureAwait(false);
                if (option == (uint)OptionType.Abort)
                {
                    // proto.md: the server MUST reply to ABORT with ACK, and SHOULD ignore any data sent with it.
                    await TryReplyAckAsync(option, ct).ConfigureAwait(false);
                    return null;
                }

                if (_server.IsStopping)
                {
                    await ReplyErrorAsync(option, OptionReplyType.ErrShutdown, "server is shutting down", ct).ConfigureAwait(false);
                    continue;
                }

                // proto.md's baseline: an option the server does not implement gets ERR_UNSUP, whatever it carries.
                await (tlsFirst
                    ? ReplyErrorAsync(option, OptionReplyType.ErrTlsRequired, "TLS is required: send NBD_OPT_STARTTLS first", ct)
                    : Enum.IsDefined((OptionType)option)
                        ? ReplyErrorAsync(option, OptionReplyType.ErrTooBig, "option payload too large", ct)
                        : ReplyErrorAsync(option, OptionReplyType.ErrUnsupported, "unsupported option", ct)).ConfigureAwait(false);
                continue;
            }

            int length = (int)header.Length;
            await _stream.ReadExactlyAsync(_buffer.Memory[..length], ct).ConfigureAwait(false);
            var payload = (ReadOnlyMemory<byte>)_buffer.Memory[..length];

            if (_server.IsStopping && option != (uint)OptionType.Abort)
            {
                // proto.md: a server being shut down SHOULD error further options (but ABORT) with ERR_SHUTDOWN, and
                // the client MUST then soft-disconnect. EXPORT_NAME cannot be answered with an error.
                if (option == (uint)OptionType.ExportName)
                {
                    return Drop("NBD_OPT_EXPORT_NAME while the server is stopping");
                }

                await ReplyErrorAsync(option, OptionReplyType.ErrShutdown, "server is shutting down", ct).ConfigureAwait(false);
                continue;
            }

            if (tlsFirst)
            {
                if (option == (uint)OptionType.ExportName)
                {
                    return Drop("NBD_OPT_EXPORT_NAME before STARTTLS while TLS is required");
                }

                await ReplyErrorAsync(option, OptionReplyType.ErrTlsRequired, "TLS is required: send NBD_OPT_STARTTLS first", ct).ConfigureAwait(false);
                continue;
            }

            switch ((OptionType)option)
            {
                case OptionType.ExportName:
                    return await ExportNameAsync(payload, ct).ConfigureAwait(false);
                case OptionType.Abort:
                    await TryReplyAckAsync(option, ct).ConfigureAwait(false);
                    return null;
                case OptionType.List:
                    await ListAsync(option, length, ct).ConfigureAwait(false);
                    break;
                case OptionType.StartTls:
                    if (!await StartTlsAsync(option, length, ct).ConfigureAwait(false))
                    {
                        return null;
                    }

                    break;
                case OptionType.Info:
                case OptionType.Go:
                    HandshakeResult? result = await InfoOrGoAsync(option, payload, ct).ConfigureAwait(false);
                    if (result is not null)
                    {
                        return result;
                    }

                    break;
                case OptionType.StructuredReply:
                    await StructuredReplyAsync(option, length, ct).ConfigureAwait(false);
                    break;
                case OptionType.ListMetaContext:
                case OptionType.SetMetaContext:
                    await MetaContextAsync(option, payload, ct).ConfigureAwait(false);
                    break;
                default:
                    await ReplyErrorAsync(option, OptionReplyType.ErrUnsupported, "unsupported option", ct).ConfigureAwait(false);
                    break;
            }
        }
    }

    private HandshakeResult? Drop(string reason)
    {
        _logger.HandshakeFailed(_id, reason);
        return null;
    }

    private async Task<HandshakeResult?> ExportNameAsync(ReadOnlyMemory<byte> payload, CancellationToken ct)
    {
        // This option cannot fail with a reply: anything wrong ends the session (doc/proto.md).
        if (payload.Length > ProtocolLimits.MaxStringLength || !TryDecode(payload.Span, out string name))
        {
            return Drop("NBD_OPT_EXPORT_NAME with an invalid name");
        }

        if (!_server.TryGetExport(name, out NbdExport? export))
        {
            return Drop($"NBD_OPT_EXPORT_NAME for unknown export '{name}'");
        }

        // Meta contexts chosen for another export do not carry over.
        bool baseAllocation = _baseAllocation && _metaContextExport == export.Name;
        TransmissionFlags flags = ExportFlags.For(export.Device, _structured);
        if (_server.Admit(export) != OptionReplyType.Ack)
        {
            return Drop($"NBD_OPT_EXPORT_NAME for '{name}', which is claimed or removed, or the server is stopping");
        }

        int n = OptionReply.WriteExportNameReply(_buffer.GetSpan(), export.Device.Size, flags, _noZeroes);
        await WriteAdmittedAsync(export, n, ct).ConfigureAwait(false);
        return new HandshakeResult(_stream, export, flags, _structured, baseAllocation, BlockSizesRequested: false);
    }

    private async Task ListAsync(uint option, int length, CancellationToken ct)
    {
        if (length != 0)
        {
            await ReplyErrorAsync(option, OptionReplyType.ErrInvalid, "NBD_OPT_LIST takes no data", ct).ConfigureAwait(false);
            return;
        }

        foreach (NbdExport export in _server.SnapshotExports())
        {
            byte[] name = Encoding.UTF8.GetBytes(export.Name);
            byte[] description = Encoding.UTF8.GetBytes(export.Description);
            byte[] reply = ArrayPool<byte>.Shared.Rent(OptionReply.HeaderSize + 4 + name.Length + description.Length);
            int n = OptionReply.WriteServer(reply, option, name, description);
            await _stream.WriteAsync(reply.AsMemory(0, n), ct).ConfigureAwait(false);
            ArrayPool<byte>.Shared.Return(reply);
        }

        await ReplyAsync(option, OptionReplyType.Ack, ct).ConfigureAwait(false);
    }

    private async Task<bool> StartTlsAsync(uint option, int length, CancellationToken ct)
    {
        if (length != 0)
        {
            await ReplyErrorAsync(option, OptionReplyType.ErrInvalid, "NBD_OPT_STARTTLS takes no data", ct).ConfigureAwait(false);
            return true;
        }

        if (_tlsMode == NbdTlsMode.Off)
        {
            await ReplyErrorAsync(option, OptionReplyType.ErrUnsupported, "TLS is not configured on this server", ct).ConfigureAwait(false);
            return true;
        }

        // doc/proto.md: the server MUST operate in NOTLS mode unless the client replied with NBD_FLAG_C_FIXED_NEWSTYLE.
        if (!_fixedNewstyle)
        {
            await ReplyErrorAsync(option, OptionReplyType.ErrPolicy, "TLS needs a client that sets NBD_FLAG_C_FIXED_NEWSTYLE", ct).ConfigureAwait(false);
            return true;
        }

        if (_tls)
        {
            await ReplyErrorAsync(option, OptionReplyType.ErrInvalid, "TLS is already active", ct).ConfigureAwait(false);
            return true;
        }

        await ReplyAsync(option, OptionReplyType.Ack, ct).ConfigureAwait(false);
        var ssl = new SslStream(_stream, leaveInnerStreamOpen: false);
        _stream = ssl;

        // The server's credentials now: they may be replaced while it serves (a renewed certificate).
        NbdTlsCredentials credentials = _server.TlsCredentials!;
        await ssl.AuthenticateAsServerAsync(
            new SslServerAuthenticationOptions
            {
                ServerCertificate = credentials.Certificate,
                ClientCertificateRequired = credentials.ClientAuthorities is not null,
                CertificateChainPolicy = credentials.ClientAuthorities is { } authorities ? ClientChainPolicy(authorities) : null,
            },
            ct).ConfigureAwait(false);
        _tls = true;

        // Whatever was negotiated in clear text could have been tampered with: start over.
        _structured = false;
        _baseAllocation = false;
        _metaContextExport = null;
        _logger.TlsStarted(_id, ssl.SslProtocol.ToString());
        return true;
    }

    /// <summary>A client certificate is trusted if it chains to one of <paramref name="authorities"/>, and to nothing
    /// else the machine trusts; SslStream then fails the handshake for a missing or foreign certificate.</summary>
    private static X509ChainPolicy ClientChainPolicy(X509Certificate2Collection authorities)
    {
        var policy = new X509ChainPolicy
        {
            TrustMode = X509ChainTrustMode.CustomRootTrust,
            RevocationMode = X509RevocationMode.NoCheck,
        };
        policy.CustomTrustStore.AddRange(authorities);
        return policy;
    }

    private async Task StructuredReplyAsync(uint option, int length, CancellationToken ct)
    {
        if (length != 0)
        {
            await ReplyErrorAsync(option, OptionReplyType.ErrInvalid, "NBD_OPT_STRUCTURED_REPLY takes no data", ct).ConfigureAwait(false);
        }
        else if (_simpleRepliesOnly)
        {
            // The far end of this socket is the kernel, which only parses simple replies.
            await ReplyErrorAsync(option, OptionReplyType.ErrUnsupported, "structured replies are off for this connection", ct).ConfigureAwait(false);
        }
        else if (_structured)
        {
            await ReplyErrorAsync(option, OptionReplyType.ErrInvalid, "structured replies already negotiated", ct).ConfigureAwait(false);
        }
        else
        {
            _structured = true;
            await ReplyAsync(option, OptionReplyType.Ack, ct).ConfigureAwait(false);
        }
    }

    private async Task<HandshakeResult?> InfoOrGoAsync(uint option, ReadOnlyMemory<byte> payload, CancellationToken ct)
    {
        // Data: u32 name length, name, u16 count, count x u16 info requests; all of it must add up exactly.
        if (!TryReadString(payload.Span, 0, following: 2, out int nameLength, out OptionReplyType error))
        {
            await ReplyErrorAsync(option, error == OptionReplyType.ErrTooBig ? error : OptionReplyType.ErrInvalid,
                "malformed export name", ct).ConfigureAwait(false);
            return null;
        }

        int count = BinaryPrimitives.ReadUInt16BigEndian(payload.Span[(4 + nameLength)..]);
        if (payload.Length != 4 + nameLength + 2 + (2 * count) || !TryDecode(payload.Span.Slice(4, nameLength), out string name))
        {
            await ReplyErrorAsync(option, OptionReplyType.ErrInvalid, "malformed information request", ct).ConfigureAwait(false);
            return null;
        }

        bool wantName = false, wantDescription = false, wantBlockSize = false;
        for (int i = 0; i < count; i++)
        {
            switch ((InfoType)BinaryPrimitives.ReadUInt16BigEndian(payload.Span[(4 + nameLength + 2 + (2 * i))..]))
            {
                case InfoType.Name: wantName = true; break;
                case InfoType.Description: wantDescription = true; break;
                case InfoType.BlockSize: wantBlockSize = true; break; // sent anyway; asking binds the client to the device's minimum
                default: break; // EXPORT is always sent; unknown requests are ignored.
            }
        }

        if (!_server.TryGetExport(name, out NbdExport? export))
        {
            await ReplyErrorAsync(option, OptionReplyType.ErrUnknown, "no such export", ct).ConfigureAwait(false);
            return null;
        }

        TransmissionFlags flags = ExportFlags.For(export.Device, _structured);
        int n = OptionReply.WriteInfoExport(_buffer.GetSpan(), option, export.Device.Size, flags);
        if (wantName)
        {
            n += OptionReply.WriteInfoString(_buffer.GetSpan()[n..], option, InfoType.Name, Encoding.UTF8.GetBytes(export.Name));
        }

        byte[] description = Encoding.UTF8.GetBytes(export.Description);
        if (wantDescription && description.Length > 0 && description.Length <= ProtocolLimits.MaxStringLength)
        {
            n += OptionReply.WriteInfoString(_buffer.GetSpan()[n..], option, InfoType.Description, description);
        }

        // Always sent: clients that did not ask still benefit, and the spec allows it. A GO that did not ask is not
        // held to the device's minimum when the device takes any alignment (NbdSession), so it is told 1, as qemu-nbd
        // tells it: its replies (block status descriptors, read chunks) then follow no larger minimum, which proto.md
        // requires of "any advertised minimum block size". INFO answers alike: proto.md requires a GO with the same
        // parameters as an INFO before it to get the same information.
        // proto.md: the preferred size is a power of 2 of at least max(minimum, 512), and the maximum at least
        // min(preferred, export size): a device's own preference is rounded up to that, and down to what the maximum
        // allows (MaxPayload is at least 4096, so that always leaves a valid size), whatever the export's size: libnbd
        // ignores the whole reply when preferred exceeds maximum.
        uint minimum = !wantBlockSize && export.Device.AcceptsAnyAlignment ? 1u : (uint)export.Device.MinimumBlockSize;
        uint maximum = (uint)_options.MaxPayload / minimum * minimum;
        uint preferred = BitOperations.RoundUpToPowerOf2(Math.Max(Math.Max(minimum, 512u), (uint)Math.Max(export.Device.PreferredBlockSize, 1)));
        if (preferred > maximum)
        {
            preferred = Math.Max(Math.Max(minimum, 512u), BitOperations.RoundUpToPowerOf2(maximum + 1) >> 1);
        }

        n += OptionReply.WriteInfoBlockSize(_buffer.GetSpan()[n..], option, minimum, preferred, maximum);
        n += OptionReply.Write(_buffer.GetSpan()[n..], option, OptionReplyType.Ack);
        if (option != (uint)OptionType.Go)
        {
            await _stream.WriteAsync(_buffer.Memory[..n], ct).ConfigureAwait(false);
            return null;
        }

        OptionReplyType admitted = _server.Admit(export);
        if (admitted != OptionReplyType.Ack)
        {
            await ReplyErrorAsync(option, admitted,
                admitted == OptionReplyType.ErrShutdown ? "server is shutting down" : "export is busy or gone; try again", ct).ConfigureAwait(false);
            return null;
        }

        await WriteAdmittedAsync(export, n, ct).ConfigureAwait(false);
        bool baseAllocation = _baseAllocation && _metaContextExport == export.Name;
        return new HandshakeResult(_stream, export, flags, _structured, baseAllocation, wantBlockSize);
    }

    /// <summary>Sends the last reply of a handshake whose connection <see cref="NbdServer.Admit"/> has counted,
    /// giving the count back if it cannot be sent.</summary>
    private async Task WriteAdmittedAsync(NbdExport export, int length, CancellationToken ct)
    {
        try
        {
            await _stream.WriteAsync(_buffer.Memory[..length], ct).ConfigureAwait(false);
        }
        catch
        {
            _server.Release(export.Name);
            throw;
        }
    }

    private async Task MetaContextAsync(uint option, ReadOnlyMemory<byte> payload, CancellationToken ct)
    {
        bool isSet = option == (uint)OptionType.SetMetaContext; // the selection is already cleared (NegotiateAsync)
        if (!_structured)
        {
            await ReplyErrorAsync(option, OptionReplyType.ErrInvalid, "negotiate structured replies first", ct).ConfigureAwait(false);
            return;
        }

        // Data: u32 name length, name, u32 query count, count x (u32 length, query).
        ReadOnlySpan<byte> data = payload.Span;
        if (!TryReadString(data, 0, following: 4, out int nameLength, out OptionReplyType error)
            || !TryDecode(data.Slice(4, nameLength), out string name))
        {
            await ReplyErrorAsync(option, error == OptionReplyType.ErrTooBig ? error : OptionReplyType.ErrInvalid,
                "malformed export name", ct).ConfigureAwait(false);
            return;
        }

        int position = 4 + nameLength;
        uint queryCount = BinaryPrimitives.ReadUInt32BigEndian(data[position..]);
        position += 4;
        bool matched = queryCount == 0 && !isSet;
        for (uint i = 0; i < queryCount && error == 0; i++)
        {
            if (!TryReadString(data, position, following: 0, out int queryLength, out error))
            {
                break;
            }

            ReadOnlySpan<byte> query = data.Slice(position + 4, queryLength);
            matched |= query.SequenceEqual(BaseAllocation) || (!isSet && query.SequenceEqual(BaseNamespace));
            position += 4 + queryLength;
        }

        if (error != 0 || position != data.Length)
        {
            await ReplyErrorAsync(option, error == OptionReplyType.ErrTooBig ? error : OptionReplyType.ErrInvalid,
                "malformed metadata context query", ct).ConfigureAwait(false);
            return;
        }

        if (!_server.TryGetExport(name, out NbdExport? export))
        {
            await ReplyErrorAsync(option, OptionReplyType.ErrUnknown, "no such export", ct).ConfigureAwait(false);
            return;
        }

        if (isSet)
        {
            _baseAllocation = matched;
            _metaContextExport = export.Name;
        }

        int n = 0;
        if (matched)
        {
            n += OptionReply.WriteMetaContext(_buffer.GetSpan(), option, isSet ? BaseAllocationContextId : 0, BaseAllocation);
        }

        n += OptionReply.Write(_buffer.GetSpan()[n..], option, OptionReplyType.Ack);
        await _stream.WriteAsync(_buffer.Memory[..n], ct).ConfigureAwait(false);
    }

    /// <summary>Checks a u32-length-prefixed string at <paramref name="position"/> against the payload and the
    /// 4096-byte limit. <paramref name="length"/> is the claimed length even when it does not fit.</summary>
    /// <summary>A string's length at <paramref name="position"/> (its 4-byte prefix), checked to leave room for the string and
    /// the <paramref name="following"/> bytes the option must still hold after it (a count); false with the option's
    /// error otherwise.</summary>
    private static bool TryReadString(ReadOnlySpan<byte> data, int position, int following, out int length, out OptionReplyType error)
    {
        length = 0;
        error = OptionReplyType.ErrInvalid;
        if (data.Length - position < 4)
        {
            return false;
        }

        uint claimed = BinaryPrimitives.ReadUInt32BigEndian(data[position..]);
        length = (int)Math.Min(claimed, int.MaxValue);
        // A length that runs past the option is ERR_INVALID whatever its size (proto.md: "a query length that would
        // require reading beyond the original length given in the option header"); one within it but over 4096, TOO_BIG.
        if ((long)claimed > (long)data.Length - position - 4 - following)
        {
            return false;
        }

        if (claimed > ProtocolLimits.MaxStringLength)
        {
            error = OptionReplyType.ErrTooBig;
            return false;
        }

        error = 0;
        return true;
    }

    private static bool TryDecode(ReadOnlySpan<byte> bytes, out string text)
    {
        try
        {
            text = StrictUtf8.GetString(bytes);
            return true;
        }
        catch (DecoderFallbackException)
        {
            text = string.Empty;
            return false;
        }
    }

    private async Task SkipAsync(uint length, CancellationToken ct)
    {
        while (length > 0)
        {
            int chunk = (int)Math.Min(length, (uint)_buffer.Capacity);
            await _stream.ReadExactlyAsync(_buffer.Memory[..chunk], ct).ConfigureAwait(false);
            length -= (uint)chunk;
        }
    }

    private async Task ReplyAsync(uint option, OptionReplyType type, CancellationToken ct)
    {
        int n = OptionReply.Write(_buffer.GetSpan(), option, type);
        await _stream.WriteAsync(_buffer.Memory[..n], ct).ConfigureAwait(false);
    }

    private async Task ReplyErrorAsync(uint option, OptionReplyType type, string message, CancellationToken ct)
    {
        _logger.OptionRefused(_id, option, type.ToString());
        int n = OptionReply.WriteError(_buffer.GetSpan(), option, type, Encoding.UTF8.GetBytes(message));
        await _stream.WriteAsync(_buffer.Memory[..n], ct).ConfigureAwait(false);
    }

    private async Task TryReplyAckAsync(uint option, CancellationToken ct)
    {
        // The client may close right after NBD_OPT_ABORT without reading the ACK (doc/proto.md).
        try
        {
            await ReplyAsync(option, OptionReplyType.Ack, ct).ConfigureAwait(false);
        }
        catch (IOException)
        {
        }
    }
}
