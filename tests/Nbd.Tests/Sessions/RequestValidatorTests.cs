using Nbd.Devices;
using Nbd.Protocol;
using Nbd.Sessions;

namespace Nbd.Tests.Sessions;

/// <summary>The errno table of doc/proto.md, request by request, before anything reaches the device.</summary>
public class RequestValidatorTests
{
    private const long Size = 1 << 20;

    [Theory]
    // type, flags, offset, length, read-only, structured, meta context, min block, expected
    [InlineData(CommandType.Read, CommandFlags.None, 0, 4096, false, false, false, 1, NbdError.None)]
    [InlineData(CommandType.Read, CommandFlags.None, Size - 4096, 8192, false, false, false, 1, NbdError.Invalid)]
    [InlineData(CommandType.Read, CommandFlags.None, Size + 512, 512, false, false, false, 1, NbdError.Invalid)]
    [InlineData(CommandType.Read, CommandFlags.None, 0, 0, false, false, false, 1, NbdError.Invalid)]
    [InlineData(CommandType.Read, CommandFlags.None, 0, (64 << 10) + 1, false, false, false, 1, NbdError.Invalid)]
    [InlineData(CommandType.Read, CommandFlags.DontFragment, 0, 4096, false, true, false, 1, NbdError.None)]
    [InlineData(CommandType.Read, CommandFlags.DontFragment, 0, 4096, false, false, false, 1, NbdError.Invalid)]
    [InlineData(CommandType.Read, CommandFlags.RequestOne, 0, 4096, false, true, true, 1, NbdError.Invalid)]
    [InlineData(CommandType.Read, CommandFlags.Fua, 0, 4096, false, false, false, 1, NbdError.None)]
    [InlineData(CommandType.Read, CommandFlags.Fua, 0, 4096, true, false, false, 1, NbdError.Invalid)]
    [InlineData(CommandType.Read, (CommandFlags)0x40, 0, 4096, false, false, false, 1, NbdError.Invalid)]
    [InlineData(CommandType.Read, CommandFlags.None, 100, 512, false, false, false, 512, NbdError.Invalid)]
    [InlineData(CommandType.Read, CommandFlags.None, 512, 100, false, false, false, 512, NbdError.Invalid)]
    [InlineData(CommandType.Read, CommandFlags.None, 512, 1024, false, false, false, 512, NbdError.None)]
    [InlineData(CommandType.Write, CommandFlags.Fua, 0, 4096, false, false, false, 1, NbdError.None)]
    [InlineData(CommandType.Write, CommandFlags.None, Size - 512, 1024, false, false, false, 1, NbdError.NoSpace)]
    [InlineData(CommandType.Write, CommandFlags.None, 0, 4096, true, false, false, 1, NbdError.NotPermitted)]
    [InlineData(CommandType.Write, CommandFlags.None, 0, (64 << 10) + 512, false, false, false, 1, NbdError.Invalid)]
    [InlineData(CommandType.Write, CommandFlags.NoHole, 0, 4096, false, false, false, 1, NbdError.Invalid)]
    [InlineData(CommandType.Write, CommandFlags.DontFragment, 0, 4096, false, true, false, 1, NbdError.Invalid)]
    [InlineData(CommandType.Flush, CommandFlags.None, 0, 0, false, false, false, 1, NbdError.None)]
    [InlineData(CommandType.Flush, CommandFlags.None, 0, 512, false, false, false, 1, NbdError.Invalid)]
    [InlineData(CommandType.Flush, CommandFlags.None, 0, 0, true, false, false, 1, NbdError.None)]
    [InlineData(CommandType.Trim, CommandFlags.None, 0, Size, false, false, false, 1, NbdError.None)]
    [InlineData(CommandType.Trim, CommandFlags.None, 512, Size, false, false, false, 1, NbdError.Invalid)]
    [InlineData(CommandType.Trim, CommandFlags.None, 0, 4096, true, false, false, 1, NbdError.NotPermitted)]
    [InlineData(CommandType.WriteZeroes, CommandFlags.NoHole | CommandFlags.FastZero, 0, 4096, false, false, false, 1, NbdError.None)]
    [InlineData(CommandType.WriteZeroes, CommandFlags.None, 512, Size, false, false, false, 1, NbdError.NoSpace)]
    [InlineData(CommandType.WriteZeroes, CommandFlags.None, 0, Size, false, false, false, 1, NbdError.None)] // past the maximum block, as the kernel's client sends
    [InlineData(CommandType.WriteZeroes, CommandFlags.None, 0, 4096, true, false, false, 1, NbdError.NotPermitted)]
    [InlineData(CommandType.Cache, CommandFlags.None, 0, 4096, true, false, false, 1, NbdError.None)]
    [InlineData(CommandType.Cache, CommandFlags.None, Size, 4096, false, false, false, 1, NbdError.Invalid)]
    [InlineData(CommandType.BlockStatus, CommandFlags.RequestOne, 0, Size, false, true, true, 1, NbdError.None)]
    [InlineData(CommandType.BlockStatus, CommandFlags.None, 100, 100, false, true, true, 512, NbdError.Invalid)]
    [InlineData(CommandType.BlockStatus, CommandFlags.None, 0, 4096, false, true, false, 1, NbdError.Invalid)]
    [InlineData(CommandType.BlockStatus, CommandFlags.None, Size - 512, 1024, false, true, true, 1, NbdError.Invalid)]
    [InlineData((CommandType)8, CommandFlags.None, 0, 0, false, true, true, 1, NbdError.Invalid)]
    [InlineData((CommandType)0xFFFF, CommandFlags.None, 0, 0, false, true, true, 1, NbdError.Invalid)]
    public void Request_is_checked_as_the_spec_maps_errors(CommandType type, CommandFlags flags, long offset, long length,
        bool readOnly, bool structured, bool metaContext, int minimumBlock, NbdError expected)
    {
        var limits = new ConnectionLimits(Size, readOnly, minimumBlock, 64 << 10, structured, metaContext, FastZero: true);
        var request = new RequestHeader(NbdMagic.Request, flags, type, 1, (ulong)offset, (uint)length);

        NbdError error = RequestValidator.Validate(request, limits, out byte[]? message);

        Assert.Equal(expected, error);
        Assert.Equal(expected != NbdError.None, message is { Length: > 0 });
    }

    [Fact]
    public void Fast_zero_is_refused_with_ENOTSUP_only_when_the_device_cannot_zero_fast()
    {
        var request = new RequestHeader(NbdMagic.Request, CommandFlags.FastZero, CommandType.WriteZeroes, 1, 0, 4096);
        var slow = new ConnectionLimits(Size, false, 1, 64 << 10, false, false, FastZero: false);
        Assert.Equal(NbdError.NotSupported, RequestValidator.Validate(request, slow, out _));
        Assert.Equal(NbdError.None, RequestValidator.Validate(request with { Flags = CommandFlags.None }, slow, out _));
    }

    [Fact]
    public void Offsets_near_the_top_of_the_64_bit_range_do_not_wrap()
    {
        var limits = new ConnectionLimits(Size, false, 1, 64 << 10, false, false, true);
        var request = new RequestHeader(NbdMagic.Request, 0, CommandType.Read, 1, ulong.MaxValue - 100, 4096);
        Assert.Equal(NbdError.Invalid, RequestValidator.Validate(request, limits, out _));
        Assert.Equal(NbdError.NoSpace, RequestValidator.Validate(request with { Type = CommandType.Write }, limits, out _));
    }
}
