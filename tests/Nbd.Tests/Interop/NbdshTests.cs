using Nbd.Tests.Devices;

namespace Nbd.Tests.Interop;

/// <summary>libnbd (through nbdsh) exercising the protocol features one by one. Each script raises on failure.</summary>
public class NbdshTests
{
    private static async Task RunAsync(string script)
    {
        Tool.Result result = await Tool.NbdshAsync(script);
        Assert.True(result.ExitCode == 0, $"nbdsh failed:\n{result.Stderr}\n{result.Stdout}");
    }

    [Fact]
    public async Task Structured_reads_send_holes_as_OFFSET_HOLE_and_DF_gets_one_data_chunk()
    {
        await using var server = new TestServer();
        await RunAsync($$"""
            h = nbd.NBD()
            h.connect_uri("{{server.Uri()}}")
            assert h.get_structured_replies_negotiated()
            assert h.can_df()
            h.pwrite(b"\x01" * 8192, 0)
            h.pwrite(b"\x02" * 4096, 65536)
            chunks = []
            def chunk(buf, offset, status, err):
                chunks.append((offset, len(buf), status))
                return 0
            buf = h.pread_structured(131072, 0, chunk)
            assert buf == b"\x01" * 8192 + bytes(57344) + b"\x02" * 4096 + bytes(61440), "data"
            expected = [(0, 8192, nbd.READ_DATA), (8192, 57344, nbd.READ_HOLE),
                        (65536, 4096, nbd.READ_DATA), (69632, 61440, nbd.READ_HOLE)]
            assert sorted(chunks) == expected, chunks
            chunks.clear()
            buf = h.pread_structured(131072, 0, chunk, nbd.CMD_FLAG_DF)
            assert chunks == [(0, 131072, nbd.READ_DATA)], chunks
            assert buf[65536] == 2
            h.shutdown()
            """);
    }

    [Fact]
    public async Task Block_status_reports_extents_and_honours_REQ_ONE()
    {
        await using var server = new TestServer();
        await RunAsync($$"""
            h = nbd.NBD()
            h.add_meta_context("base:allocation")
            h.connect_uri("{{server.Uri()}}")
            assert h.can_meta_context("base:allocation")
            h.pwrite(b"\x01" * 8192, 0)
            h.zero(16384, 65536, nbd.CMD_FLAG_NO_HOLE)
            seen = []
            def extents(context, offset, entries, err):
                assert context == "base:allocation"
                seen.append((offset, list(entries)))
                return 0
            h.block_status(1 << 20, 0, extents)
            assert seen == [(0, [8192, 0, 57344, 3, 16384, 2, 966656, 3])], seen
            seen.clear()
            h.block_status(1 << 20, 0, extents, nbd.CMD_FLAG_REQ_ONE)
            assert seen == [(0, [8192, 0])], seen
            seen.clear()
            h.block_status(4096, 8192, extents, nbd.CMD_FLAG_REQ_ONE)
            assert seen == [(8192, [4096, 3])], seen
            h.shutdown()
            """);
    }

    [Fact]
    public async Task Option_mode_lists_exports_refuses_unknown_export_info_and_aborts()
    {
        await using var server = new TestServer(null,
            new NbdExport("mem", "first", new MemoryBlockDevice(1 << 20)),
            new NbdExport("other", "second", new MemoryBlockDevice(2 << 20)));
        await RunAsync($$"""
            import errno
            h = nbd.NBD()
            h.set_opt_mode(True)
            h.set_full_info(True)
            h.connect_uri("{{server.Uri("")}}")
            names = []
            def entry(name, description):
                names.append((name, description))
                return 0
            assert h.opt_list(entry) == 2
            assert names == [("mem", "first"), ("other", "second")], names
            h.set_export_name("nope")
            try:
                h.opt_info()
                raise AssertionError("info on an unknown export succeeded")
            except nbd.Error as e:
                assert e.errnum == errno.ENOENT, str(e)  # libnbd's mapping of NBD_REP_ERR_UNKNOWN
            h.set_export_name("other")
            h.opt_info()
            assert h.get_size() == 2 << 20
            assert h.get_canonical_export_name() == "other"
            assert h.get_export_description() == "second"
            assert h.get_block_size(nbd.SIZE_PREFERRED) == 4096
            assert h.get_block_size(nbd.SIZE_MAXIMUM) == 32 << 20
            h.set_export_name("")
            h.opt_info()
            assert h.get_canonical_export_name() == "mem", "default export is the first one"
            contexts = []
            h.opt_list_meta_context(lambda name: contexts.append(name) or 0)
            assert contexts == ["base:allocation"], contexts
            h.opt_abort()
            assert h.aio_is_closed()
            """);
    }

    [Fact]
    public async Task Errors_map_to_errno_and_the_connection_keeps_working()
    {
        await using var server = new TestServer(null,
            new NbdExport("mem", "rw", new MemoryBlockDevice(1 << 20, supportsFastZero: false)),
            new NbdExport("ro", "read-only", new MemoryBlockDevice(1 << 20, readOnly: true)));
        await RunAsync($$"""
            import errno
            def expect(errnum, fn, *args):
                try:
                    fn(*args)
                except nbd.Error as e:
                    assert e.errnum == errnum, (fn.__name__, e.errnum, str(e))
                    return
                raise AssertionError(fn.__name__ + " succeeded")
            for structured in (True, False):
                h = nbd.NBD()
                h.set_strict_mode(0)
                h.set_request_structured_replies(structured)
                h.connect_uri("{{server.Uri()}}")
                assert h.get_structured_replies_negotiated() == structured
                h.pwrite(b"\x05" * 4096, 0)
                expect(errno.EINVAL, h.pread, 8192, (1 << 20) - 4096)
                expect(errno.ENOSPC, h.pwrite, b"x" * 8192, (1 << 20) - 4096)
                expect(errno.EINVAL, h.trim, 8192, (1 << 20) - 4096)
                expect(errno.ENOSPC, h.zero, 8192, (1 << 20) - 4096)
                expect(errno.EINVAL, h.pread, 0, 0)
                expect(errno.EINVAL, h.pread, 512, 0, nbd.CMD_FLAG_NO_HOLE)
                expect(errno.ENOTSUP, h.zero, 4096, 0, nbd.CMD_FLAG_FAST_ZERO)
                expect(errno.EINVAL, h.pread, (32 << 20) + 4096, 0)
                assert h.pread(4096, 0) == b"\x05" * 4096, "connection still works"
                h.flush()
                h.shutdown()
            ro = nbd.NBD()
            ro.set_strict_mode(0)
            ro.connect_uri("{{server.Uri("ro")}}")
            assert ro.is_read_only()
            expect(errno.EPERM, ro.pwrite, b"x" * 512, 0)
            expect(errno.EPERM, ro.trim, 512, 0)
            assert ro.pread(512, 0) == bytes(512)
            ro.shutdown()
            """);
    }

    [Fact]
    public async Task A_full_device_answers_ENOSPC()
    {
        await using var server = new TestServer();
        server.Device().Full = true;
        await RunAsync($$"""
            import errno
            h = nbd.NBD()
            h.connect_uri("{{server.Uri()}}")
            try:
                h.pwrite(b"x" * 4096, 0)
                raise AssertionError("write to a full device succeeded")
            except nbd.Error as e:
                assert e.errnum == errno.ENOSPC, e.errnum
            assert h.pread(4096, 0) == bytes(4096)
            h.shutdown()
            """);
    }

    [Fact]
    public async Task Nbd_client_style_connection_uses_simple_replies_and_no_DF()
    {
        await using var server = new TestServer();
        await RunAsync($$"""
            h = nbd.NBD()
            h.set_request_structured_replies(False)
            h.connect_uri("{{server.Uri()}}")
            assert not h.get_structured_replies_negotiated()
            assert not h.can_df()
            assert not h.can_meta_context("base:allocation")
            assert h.can_multi_conn() and h.can_flush() and h.can_fua() and h.can_trim() and h.can_zero()
            h.pwrite(b"\x07" * 65536, 4096, nbd.CMD_FLAG_FUA)
            assert h.pread(65536, 4096) == b"\x07" * 65536
            h.trim(4096, 4096)
            assert h.pread(4096, 4096) == bytes(4096)
            h.shutdown()
            """);
        Assert.True(server.Device().Flushes == 0, "FUA on a write is passed to the device, not turned into a flush");
    }

    [Theory]
    [InlineData("0")]
    [InlineData("nbd.HANDSHAKE_FLAG_FIXED_NEWSTYLE")]
    public async Task Export_name_handshake_works_with_and_without_zero_padding(string handshakeFlags)
    {
        await using var server = new TestServer();
        await RunAsync($$"""
            h = nbd.NBD()
            h.set_handshake_flags({{handshakeFlags}})
            h.set_request_structured_replies(False)
            h.connect_uri("{{server.Uri()}}")
            assert h.get_size() == 16 << 20
            h.pwrite(b"\x09" * 4096, 8192)
            assert h.pread(4096, 8192) == b"\x09" * 4096
            h.shutdown()
            """);
    }

    [Fact]
    public async Task Many_pipelined_requests_complete_with_their_own_data()
    {
        await using var server = new TestServer();
        await RunAsync($$"""
            h = nbd.NBD()
            h.connect_uri("{{server.Uri()}}")
            cookies = []
            for i in range(256):
                cookies.append(h.aio_pwrite(bytes([i % 251 + 1]) * 4096, i * 4096))
            while h.aio_in_flight() > 0:
                h.poll(-1)
            for c in cookies:
                assert h.aio_command_completed(c)
            bufs = [nbd.Buffer(4096) for i in range(256)]
            cookies = [h.aio_pread(bufs[i], i * 4096) for i in range(256)]
            while h.aio_in_flight() > 0:
                h.poll(-1)
            for i in range(256):
                assert h.aio_command_completed(cookies[i])
                assert bufs[i].to_bytearray() == bytes([i % 251 + 1]) * 4096, i
            h.shutdown()
            """);
    }
}
