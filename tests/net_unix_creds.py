# Run as root: listeners in a private (0700) and an open (0755) directory,
# then drop to nobody and connect to both. Prints what nobody got and the
# peer credentials each side saw.
import os, socket, struct, tempfile
base = tempfile.mkdtemp()
os.chmod(base, 0o755)
priv, pub = os.path.join(base, "priv"), os.path.join(base, "pub")
os.mkdir(priv, 0o700)
os.mkdir(pub, 0o755)
l1 = socket.socket(socket.AF_UNIX); l1.bind(priv + "/s"); l1.listen(4)
l2 = socket.socket(socket.AF_UNIX); l2.bind(pub + "/s"); l2.listen(4)
os.chmod(priv + "/s", 0o777); os.chmod(pub + "/s", 0o777)
os.setgroups([])
os.setresgid(65534, 65534, 65534)
os.setresuid(65534, 65534, 65534)
out = []
for path in (priv + "/s", pub + "/s"):
    c = socket.socket(socket.AF_UNIX)
    try:
        c.connect(path)
        out.append("ok")
    except OSError as e:
        out.append("errno=%d" % e.errno)
a, _ = l2.accept()
pid, uid, gid = struct.unpack("3i", a.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12))
out.append("peer uid=%d gid=%d" % (uid, gid))
# bind as nobody in the private directory: refused
b = socket.socket(socket.AF_UNIX)
try:
    b.bind(priv + "/t"); out.append("bind ok")
except OSError as e:
    out.append("bind errno=%d" % e.errno)
print(" ".join(out))
