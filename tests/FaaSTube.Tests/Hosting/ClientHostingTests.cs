using System.Net.Sockets;
using FaaSTube.Channels;
using FaaSTube.Hosting;
using FaaSTube.Tests.Support;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Options;
using static FaaSTube.Tests.Hosting.HostingHarness;

namespace FaaSTube.Tests.Hosting;

[TestClass]
public sealed class ClientHostingTests
{
    public TestContext TestContext { get; set; } = null!;

    private static IHost FunctionHost(string socket, params (string Key, string Value)[] overrides)
    {
        var settings = ClientSettings(socket);
        foreach (var (key, value) in overrides)
        {
            settings[key] = value;
        }

        return Build(settings, s => s.AddFaaSTubeClient());
    }

    [TestMethod]
    public async Task The_client_connects_on_first_use_fails_clearly_while_no_node_is_there_and_reconnects_when_one_is_back()
    {
        var random = Seeds.Create(TestContext);
        string socket = NewSocket();
        using var functions = FunctionHost(socket);
        await functions.StartAsync(); // no node yet: the function host starts anyway
        var tubes = functions.Services.GetRequiredService<ITubeClientProvider>();

        var none = await Assert.ThrowsAsync<TubeNodeUnavailableException>(async () => await tubes.GetClientAsync());
        Assert.AreEqual(FaaSTubeErrorCode.NodeUnavailable, ((FaaSTubeException)none).Code, "one root type, one code");
        StringAssert.Contains(none.Message, socket, "the message says where it looked");

        var first = await StartNodeHostAsync(socket);
        var client = await tubes.GetClientAsync();
        Assert.AreSame(client, await tubes.GetClientAsync(), "a connected client is shared");
        var data = random.Bytes(1 + random.Next(1 << 16));
        var back = new byte[data.Length];
        await client.GetAsync(await client.PutAsync(data), back.AsMemory());
        CollectionAssert.AreEqual(data, back);

        await first.StopAsync();
        first.Dispose();
        await Assert.ThrowsAsync<TubeNodeUnavailableException>(() => client.FlushAsync()); // the function's call sees the node gone
        Assert.IsFalse(client.IsConnected);
        await Assert.ThrowsAsync<TubeNodeUnavailableException>(async () => await tubes.GetClientAsync()); // and so does the next connect, while none is there

        using var second = await StartNodeHostAsync(socket);
        var again = await tubes.GetClientAsync();
        Assert.AreNotSame(client, again, "a new connection to the node that came back");
        Assert.IsTrue(again.IsConnected);
        var more = random.Bytes(1 + random.Next(1 << 16));
        var moreBack = new byte[more.Length];
        await again.GetAsync(await again.PutAsync(more), moreBack.AsMemory());
        CollectionAssert.AreEqual(more, moreBack, "the reconnected client works");

        await functions.StopAsync();
        await second.StopAsync();
    }

    [TestMethod]
    public async Task Building_the_client_opens_no_connection()
    {
        string socket = NewSocket();
        using var listener = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        listener.Bind(new UnixDomainSocketEndPoint(socket));
        listener.Listen(8);
        try
        {
            using var functions = FunctionHost(socket);
            await functions.StartAsync();
            _ = functions.Services.GetRequiredService<ITubeClientProvider>();
            Assert.IsFalse(listener.Poll(0, SelectMode.SelectRead), "nobody connected to the socket: the provider connects on first use");
            await functions.StopAsync();
        }
        finally
        {
            File.Delete(socket);
        }
    }

    [TestMethod]
    [DataRow("FaaSTube:Client:WindowBytes", "4096")]
    [DataRow("FaaSTube:Client:ControlRingBytes", "3000")]
    [DataRow("FaaSTube:Client:CallTimeout", "00:00:00")]
    public async Task An_invalid_client_option_fails_the_function_hosts_start_naming_it(string key, string value)
    {
        using var functions = FunctionHost(NewSocket(), (key, value));
        var error = await Assert.ThrowsAsync<OptionsValidationException>(() => functions.StartAsync());
        StringAssert.Contains(error.Message, key + ":", "the message names the option by its configuration path");
    }

    [TestMethod]
    public async Task A_window_under_8_KiB_is_refused_by_the_options_own_validation_too()
    {
        var options = ClientOptions(NewSocket());
        options.WindowBytes = 4096;
        var error = await Assert.ThrowsAsync<ArgumentOutOfRangeException>(() => TubeClient.ConnectAsync(options));
        Assert.AreEqual(nameof(TubeClientOptions.WindowBytes), error.ParamName);
    }
}
