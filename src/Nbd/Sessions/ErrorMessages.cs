using System.Text;

namespace Nbd.Sessions;

/// <summary>Texts of structured error chunks, encoded once so that refusing a request allocates nothing.</summary>
internal static class ErrorMessages
{
    public static readonly byte[] UnknownCommand = Encoding.ASCII.GetBytes("unknown command");
    public static readonly byte[] UnknownFlags = Encoding.ASCII.GetBytes("unknown command flags");
    public static readonly byte[] FlagNotAllowed = Encoding.ASCII.GetBytes("flag not valid for this command or connection");
    public static readonly byte[] ReadOnly = Encoding.ASCII.GetBytes("export is read-only");
    public static readonly byte[] PayloadTooLarge = Encoding.ASCII.GetBytes("request length exceeds the maximum payload");
    public static readonly byte[] ZeroLength = Encoding.ASCII.GetBytes("request length is zero");
    public static readonly byte[] BeyondEnd = Encoding.ASCII.GetBytes("request extends beyond the end of the export");
    public static readonly byte[] Unaligned = Encoding.ASCII.GetBytes("request is not aligned to the minimum block size");
    public static readonly byte[] FlushRange = Encoding.ASCII.GetBytes("flush offset and length must be zero");
    public static readonly byte[] NoFastZero = Encoding.ASCII.GetBytes("fast zeroing is not supported");
    public static readonly byte[] NoMetaContext = Encoding.ASCII.GetBytes("no metadata context was negotiated");
    public static readonly byte[] ShuttingDown = Encoding.ASCII.GetBytes("server is shutting down");
    public static readonly byte[] DeviceFailed = Encoding.ASCII.GetBytes("device error");
}
