"""The twistd plugin: ``twistd -n pushd``.  Only a ServiceMaker lives here."""

from twisted.application.service import ServiceMaker

pushd = ServiceMaker(
    "pushd",
    "pushd.tap",
    "ZKTeco Attendance PUSH (ADMS/iclock) server",
    "pushd",
)
