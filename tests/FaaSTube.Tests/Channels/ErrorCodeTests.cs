using FaaSTube.Channels;

namespace FaaSTube.Tests.Channels;

/// <summary>
/// The wire's refusal codes (<see cref="TubeError"/>, beside the channels) and the exception root's
/// codes (<see cref="FaaSTubeErrorCode"/>, in the lower native assembly, which cannot see the
/// channels) are one list: every wire code is a root code of the same name and number.
/// </summary>
[TestClass]
public sealed class ErrorCodeTests
{
    [TestMethod]
    public void Every_wire_code_is_the_exception_roots_code_of_the_same_name_and_number()
    {
        foreach (var error in Enum.GetValues<TubeError>())
        {
            var code = (FaaSTubeErrorCode)(int)error;
            Assert.IsTrue(Enum.IsDefined(code), $"{error} = {(int)error} has no FaaSTubeErrorCode of that number");
            Assert.AreEqual(error.ToString(), code.ToString(), $"wire code {(int)error}");
            Assert.AreEqual(code, new TubeException(error, "refused").Code, "a refusal's code is its wire code");
        }
    }

    [TestMethod]
    public void Root_codes_below_100_are_all_wire_codes()
    {
        foreach (var code in Enum.GetValues<FaaSTubeErrorCode>().Where(c => (int)c < 100))
        {
            Assert.IsTrue(Enum.IsDefined((TubeError)(int)code), $"{code} = {(int)code} is in the wire's range but not a TubeError");
        }
    }
}
