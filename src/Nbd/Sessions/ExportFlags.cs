using Nbd.Devices;
using Nbd.Protocol;

namespace Nbd.Sessions;

/// <summary>The transmission flags one connection is told, from the device and what the client negotiated.</summary>
internal static class ExportFlags
{
    public static TransmissionFlags For(IBlockDevice device, bool structuredReplies)
    {
        // CAN_MULTI_CONN: IBlockDevice promises that a completed write is visible on every connection.
        var flags = TransmissionFlags.HasFlags | TransmissionFlags.SendFlush | TransmissionFlags.SendCache
            | TransmissionFlags.CanMultiConn;
        flags |= device.IsReadOnly
            ? TransmissionFlags.ReadOnly
            : TransmissionFlags.SendFua | TransmissionFlags.SendTrim | TransmissionFlags.SendWriteZeroes
                | TransmissionFlags.SendFastZero;

        // SEND_DF must stay clear unless structured replies were negotiated.
        if (structuredReplies)
        {
            flags |= TransmissionFlags.SendDf;
        }

        return flags;
    }
}
