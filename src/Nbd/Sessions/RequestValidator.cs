using Nbd.Devices;
using Nbd.Protocol;

namespace Nbd.Sessions;

/// <summary>
/// Checks one request against the export and what the connection negotiated, before anything touches the
/// device (nbdkit's server/protocol.c validate_request). Errors as doc/proto.md maps them: EINVAL for unknown
/// commands and flags and out-of-range reads/trims, ENOSPC for writes past the end, EPERM for writes to a
/// read-only export, EINVAL for READ, WRITE and CACHE longer than the advertised maximum ("The server SHOULD report an
/// NBD_EINVAL error if the client's request [...] is larger than the advertised maximum block size"; EOVERFLOW, which
/// this once was, is for DF reads), ENOTSUP only for FAST_ZERO.
/// </summary>
internal static class RequestValidator
{
    private const CommandFlags KnownFlags = CommandFlags.Fua | CommandFlags.NoHole | CommandFlags.DontFragment
        | CommandFlags.RequestOne | CommandFlags.FastZero;

    public static NbdError Validate(in RequestHeader request, in ConnectionLimits limits, out byte[]? message)
    {
        CommandFlags flags = request.Flags;
        CommandType type = request.Type;
        if ((flags & ~KnownFlags) != 0)
        {
            return Fail(NbdError.Invalid, ErrorMessages.UnknownFlags, out message);
        }

        // FUA is valid on every command once SEND_FUA is advertised (only writable exports advertise it).
        if ((flags & CommandFlags.Fua) != 0 && limits.ReadOnly)
        {
            return Fail(NbdError.Invalid, ErrorMessages.FlagNotAllowed, out message);
        }

        CommandFlags allowed = type switch
        {
            CommandType.Read when limits.StructuredReplies => CommandFlags.DontFragment,
            CommandType.WriteZeroes => CommandFlags.NoHole | CommandFlags.FastZero,
            CommandType.BlockStatus => CommandFlags.RequestOne,
            _ => CommandFlags.None,
        };
        if ((flags & ~(allowed | CommandFlags.Fua)) != 0)
        {
            return Fail(NbdError.Invalid, ErrorMessages.FlagNotAllowed, out message);
        }

        switch (type)
        {
            case CommandType.Read:
                return CheckPayload(request, limits, out message)
                    ?? CheckRange(request, limits, NbdError.Invalid, out message);
            case CommandType.Write:
                return CheckWritable(limits, out message)
                    ?? CheckPayload(request, limits, out message)
                    ?? CheckRange(request, limits, NbdError.NoSpace, out message);
            case CommandType.Flush:
                return request.Offset != 0 || request.Length != 0
                    ? Fail(NbdError.Invalid, ErrorMessages.FlushRange, out message)
                    : Ok(out message);
            case CommandType.Trim:
                return CheckWritable(limits, out message) ?? CheckRange(request, limits, NbdError.Invalid, out message);
            case CommandType.WriteZeroes:
                // Not held to the maximum block size, as TRIM is not: the kernel's client zeroes far larger ranges
                // in one request, and current proto.md limits these lengths only by the export's size.
                if ((CheckWritable(limits, out message) ?? CheckRange(request, limits, NbdError.NoSpace, out message)) is var refused
                    && refused != NbdError.None)
                {
                    return refused;
                }

                return (flags & CommandFlags.FastZero) != 0 && !limits.FastZero
                    ? Fail(NbdError.NotSupported, ErrorMessages.NoFastZero, out message)
                    : Ok(out message);
            case CommandType.Cache:
                return CheckPayload(request, limits, out message)
                    ?? CheckRange(request, limits, NbdError.Invalid, out message);
            case CommandType.BlockStatus:
                return !limits.BaseAllocation
                    ? Fail(NbdError.Invalid, ErrorMessages.NoMetaContext, out message)
                    : CheckRange(request, limits, NbdError.Invalid, out message);
            default:
                return Fail(NbdError.Invalid, ErrorMessages.UnknownCommand, out message);
        }
    }

    private static NbdError? CheckWritable(in ConnectionLimits limits, out byte[]? message) =>
        limits.ReadOnly ? Fail(NbdError.NotPermitted, ErrorMessages.ReadOnly, out message) : Pass(out message);

    private static NbdError? CheckPayload(in RequestHeader request, in ConnectionLimits limits, out byte[]? message) =>
        request.Length > (uint)limits.MaxPayload ? Fail(NbdError.Invalid, ErrorMessages.PayloadTooLarge, out message) : Pass(out message);

    private static NbdError CheckRange(in RequestHeader request, in ConnectionLimits limits, NbdError beyondEnd, out byte[]? message)
    {
        if (request.Length == 0)
        {
            return Fail(NbdError.Invalid, ErrorMessages.ZeroLength, out message);
        }

        ulong size = (ulong)limits.Size;
        if (request.Offset > size || request.Length > size - request.Offset)
        {
            return Fail(beyondEnd, ErrorMessages.BeyondEnd, out message);
        }

        uint block = (uint)limits.MinimumBlockSize;
        if (block > 1 && (request.Offset % block != 0 || request.Length % block != 0))
        {
            return Fail(NbdError.Invalid, ErrorMessages.Unaligned, out message);
        }

        return Ok(out message);
    }

    private static NbdError Fail(NbdError error, byte[] text, out byte[]? message)
    {
        message = text;
        return error;
    }

    private static NbdError Ok(out byte[]? message)
    {
        message = null;
        return NbdError.None;
    }

    private static NbdError? Pass(out byte[]? message)
    {
        message = null;
        return null;
    }
}
