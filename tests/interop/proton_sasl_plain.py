"""SASL PLAIN checking for a *server* proton.Transport (python-qpid-proton).

Proton's built-in (non-Cyrus) SASL implementation only offers ANONYMOUS and
EXTERNAL on the server side and cannot verify PLAIN credentials.  The PyPI
wheel of python-qpid-proton is built without Cyrus SASL
(``proton.SASL.extended()`` is False), so ``SASL.config_path`` / a sasldb are
not an option.

Proton does export a SASL plug-in hook, ``pnx_sasl_set_implementation``.  We
clone the built-in implementation table (``default_sasl_impl``) and replace
two entries with ctypes callbacks:

  * ``list_mechanisms``  -> returns our mechanism list (e.g. "PLAIN ANONYMOUS")
  * ``process_init``     -> checks PLAIN ([authzid] NUL authcid NUL passwd)
                            itself and defers every other mechanism to the
                            built-in implementation.

All SASL frames are still encoded, framed and sent by Proton itself; a failed
check yields sasl-outcome code=1 (auth).

Same technique as eventhubs-proto/tests/fixtures/proton/gen.py (copied here so
the interop scripts have no dependency on the fixture generator).  Checked
against python-qpid-proton 0.40.0 (pnx_sasl_implementation has 14 function
pointers).
"""

import ctypes
import os


class SaslPlainServer:
    N_ENTRIES = 14          # sizeof(pnx_sasl_implementation) / sizeof(void*)
    SASL_POSTED_OUTCOME = 7  # enum pnx_sasl_state

    class _Bytes(ctypes.Structure):
        _fields_ = [("size", ctypes.c_size_t), ("start", ctypes.c_void_p)]

    def __init__(self, mechs, user, password, on_result=None):
        """mechs: space separated list offered to clients, e.g. "PLAIN ANONYMOUS".
        on_result(mech, authcid, ok): optional callback for logging."""
        import cproton
        so = os.path.join(os.path.dirname(os.path.abspath(cproton.__file__)),
                          "cproton_ffi.abi3.so")
        self.lib = lib = ctypes.CDLL(so)
        table_t = ctypes.c_void_p * self.N_ENTRIES
        default = table_t.in_dll(lib, "default_sasl_impl")
        # every entry of the built-in table is a real function pointer
        if not all(default):
            raise RuntimeError("unexpected default_sasl_impl layout in this Proton build")
        self.default = default
        lib.pnx_sasl_set_desired_state.argtypes = [ctypes.c_void_p, ctypes.c_int]
        lib.pnx_sasl_succeed_authentication.argtypes = [ctypes.c_void_p, ctypes.c_void_p,
                                                        ctypes.c_void_p]
        lib.pnx_sasl_fail_authentication.argtypes = [ctypes.c_void_p]
        lib.pnx_sasl_set_implementation.argtypes = [ctypes.c_void_p, ctypes.c_void_p,
                                                    ctypes.c_void_p]
        self.mechs = ctypes.create_string_buffer(mechs.encode())
        self.user = ctypes.create_string_buffer(user.encode())
        self.user_b = user.encode()
        self.password_b = password.encode()
        self.on_result = on_result
        LIST = ctypes.CFUNCTYPE(ctypes.c_void_p, ctypes.c_void_p)
        INIT = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_char_p,
                                ctypes.POINTER(self._Bytes))
        orig_init = INIT(default[5])

        def list_mechs(t):
            return ctypes.addressof(self.mechs)

        def process_init(t, mech, recv):
            if mech == b"PLAIN":
                n = recv.contents.size if recv else 0
                data = ctypes.string_at(recv.contents.start, n) if n else b""
                parts = data.split(b"\0")
                ok = (len(parts) == 3 and parts[1] == self.user_b
                      and parts[2] == self.password_b)
                if ok:
                    lib.pnx_sasl_succeed_authentication(t, ctypes.addressof(self.user), None)
                else:
                    lib.pnx_sasl_fail_authentication(t)
                lib.pnx_sasl_set_desired_state(t, self.SASL_POSTED_OUTCOME)
                if self.on_result:
                    try:
                        self.on_result("PLAIN", parts[1] if len(parts) > 1 else b"", ok)
                    except Exception:
                        pass
            else:
                orig_init(t, mech, recv)
                if self.on_result:
                    try:
                        self.on_result(mech.decode(errors="replace") if mech else "", b"", None)
                    except Exception:
                        pass

        self._cb = (LIST(list_mechs), INIT(process_init), orig_init)
        self.table = table_t(*default)
        self.table[1] = ctypes.cast(self._cb[0], ctypes.c_void_p).value
        self.table[5] = ctypes.cast(self._cb[1], ctypes.c_void_p).value

    def install(self, transport):
        """Call on a server Transport before it has processed any input."""
        from cproton_ffi import ffi
        transport.sasl()  # make sure the SASL layer exists
        ptr = int(ffi.cast("uintptr_t", transport._impl))
        self.lib.pnx_sasl_set_implementation(ptr, ctypes.addressof(self.table), None)
