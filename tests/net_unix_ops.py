import socket, os, sys, array, tempfile
d = tempfile.mkdtemp()
os.chdir(d)
os.umask(0o077)
# bind a relative path (under a bind list: made on the program's behalf)
srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
srv.bind("rel.sock")
srv.listen(4)
mode = oct(os.stat("rel.sock").st_mode & 0o777)
c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
c.connect("rel.sock")
a, _ = srv.accept()
# pass an fd with SCM_RIGHTS
r, w = os.pipe()
c.sendmsg([b"x"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [w]))])
msg, anc, flags, addr = a.recvmsg(1, socket.CMSG_SPACE(4))
fd = array.array("i", anc[0][2])[0]
os.write(fd, b"hello")
got = os.read(r, 5)
# datagram to a path
ds = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
ds.bind(os.path.join(d, "dg.sock"))
dc = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
dc.sendto(b"dgram", os.path.join(d, "dg.sock"))
dg = ds.recv(10)
# abstract
ab = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
ab.bind("\0unotify-test-%d" % os.getpid())
ab.listen(1)
ac = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
# Under a network policy an abstract name is reached only through an allow
# rule that names it (the supervisor, outside the sandbox's Landlock domain,
# would reach the host's): refused here, under a deny list.
try:
    ac.connect("\0unotify-test-%d" % os.getpid())
    abstract = "reached"
except ConnectionRefusedError:
    abstract = "refused"
# big stream send
p1, p2 = socket.socketpair()
p1.setblocking(True)
import threading
data = b"z" * (3 << 20)
recvd = bytearray()
def rd():
    while len(recvd) < len(data):
        recvd.extend(p2.recv(1 << 16))
t = threading.Thread(target=rd); t.start()
n = p1.sendmsg([data])
t.join()
print("mode", mode, "fd", got, "dgram", dg, "abstract", abstract, "sent", n, len(recvd))
