package main

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
)

// detectNodeIP returns the first IPv4 address of the interface that holds the default
// route, else the first global unicast address of any interface.
func detectNodeIP() (string, error) {
	if name, err := defaultRouteInterface(); err == nil {
		if ifc, err := net.InterfaceByName(name); err == nil {
			if ip := firstIPv4(ifc); ip != "" {
				return ip, nil
			}
		}
	}
	ifcs, err := net.Interfaces()
	if err != nil {
		return "", err
	}
	for i := range ifcs {
		if ifcs[i].Flags&net.FlagLoopback == 0 && ifcs[i].Flags&net.FlagUp != 0 {
			if ip := firstIPv4(&ifcs[i]); ip != "" {
				return ip, nil
			}
		}
	}
	return "", errors.New("no interface with a global IPv4 address")
}

func firstIPv4(ifc *net.Interface) string {
	addrs, err := ifc.Addrs()
	if err != nil {
		return ""
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil && n.IP.IsGlobalUnicast() {
			return n.IP.String()
		}
	}
	return ""
}

// defaultRouteInterface reads the IPv4 routing table for the 0.0.0.0/0 route.
func defaultRouteInterface() (string, error) {
	f, err := os.Open("/proc/net/route")
	if err != nil {
		return "", err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) > 7 && fields[1] == "00000000" && fields[7] == "00000000" {
			return fields[0], nil
		}
	}
	return "", fmt.Errorf("no default route")
}
