package main

import (
	"fmt"
	"net"
	"strconv"
)

// listenAddr decides the address serve listens on: the --listen flag when
// given; else, when the environment sets PORT (Cloud Run and other container
// platforms send requests to that port on every interface), that port on every
// interface; else the configuration's listen. A PORT that is not a port
// number (0 to 65535; 0 picks a free one) is an error, never ignored: a
// platform that sets it sends its traffic nowhere else.
func listenAddr(flag, port, configured string) (string, error) {
	switch {
	case flag != "":
		return flag, nil
	case port != "":
		n, err := strconv.ParseUint(port, 10, 16)
		if err != nil {
			return "", fmt.Errorf("PORT=%q is not a port number (0 to 65535): set PORT to the port to listen on, or pass --listen", port)
		}
		return net.JoinHostPort("", strconv.FormatUint(n, 10)), nil
	}
	return configured, nil
}
