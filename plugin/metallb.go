package plugin

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
)

// MetalLB's API group. Its objects are decoded into the small structs below: only the fields
// the conversion reads, named as MetalLB's CRDs name them (metallb.io v1beta1, and v1beta2
// for BGPPeer, whose fields are a superset).
const metallbGroup = "metallb.io"

// MetalLB holds MetalLB objects read from files or a cluster.
type MetalLB struct {
	Pools       []MetalLBPool
	L2Ads       []MetalLBL2Advertisement
	BGPAds      []MetalLBBGPAdvertisement
	Peers       []MetalLBPeer
	Communities []MetalLBCommunity
	// Ignored lists the objects read that are not converted (other kinds), as "Kind ns/name".
	Ignored []string
}

// MetalLBPool is an IPAddressPool.
type MetalLBPool struct {
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		Addresses         []string `json:"addresses"`
		AutoAssign        *bool    `json:"autoAssign"`
		AvoidBuggyIPs     bool     `json:"avoidBuggyIPs"`
		ServiceAllocation *struct {
			Priority           int32                  `json:"priority"`
			Namespaces         []string               `json:"namespaces"`
			NamespaceSelectors []metav1.LabelSelector `json:"namespaceSelectors"`
			ServiceSelectors   []metav1.LabelSelector `json:"serviceSelectors"`
		} `json:"serviceAllocation"`
	} `json:"spec"`
}

// MetalLBL2Advertisement is an L2Advertisement.
type MetalLBL2Advertisement struct {
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		IPAddressPools         []string               `json:"ipAddressPools"`
		IPAddressPoolSelectors []metav1.LabelSelector `json:"ipAddressPoolSelectors"`
		NodeSelectors          []metav1.LabelSelector `json:"nodeSelectors"`
		Interfaces             []string               `json:"interfaces"`
	} `json:"spec"`
}

// MetalLBBGPAdvertisement is a BGPAdvertisement.
type MetalLBBGPAdvertisement struct {
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		AggregationLength      *int32                 `json:"aggregationLength"`
		AggregationLengthV6    *int32                 `json:"aggregationLengthV6"`
		LocalPref              uint32                 `json:"localPref"`
		Communities            []string               `json:"communities"`
		IPAddressPools         []string               `json:"ipAddressPools"`
		IPAddressPoolSelectors []metav1.LabelSelector `json:"ipAddressPoolSelectors"`
		NodeSelectors          []metav1.LabelSelector `json:"nodeSelectors"`
		Peers                  []string               `json:"peers"`
	} `json:"spec"`
}

// MetalLBPeer is a BGPPeer (v1beta1 or v1beta2).
type MetalLBPeer struct {
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		MyASN          uint32                 `json:"myASN"`
		PeerASN        uint32                 `json:"peerASN"`
		DynamicASN     string                 `json:"dynamicASN"`
		PeerAddress    string                 `json:"peerAddress"`
		Interface      string                 `json:"interface"`
		SourceAddress  string                 `json:"sourceAddress"`
		PeerPort       int32                  `json:"peerPort"`
		HoldTime       *metav1.Duration       `json:"holdTime"`
		KeepaliveTime  *metav1.Duration       `json:"keepaliveTime"`
		ConnectTime    *metav1.Duration       `json:"connectTime"`
		RouterID       string                 `json:"routerID"`
		NodeSelectors  []metav1.LabelSelector `json:"nodeSelectors"`
		Password       string                 `json:"password"`
		PasswordSecret struct {
			Name      string `json:"name"`
			Namespace string `json:"namespace"`
		} `json:"passwordSecret"`
		BFDProfile             string `json:"bfdProfile"`
		EnableGracefulRestart  bool   `json:"enableGracefulRestart"`
		EBGPMultiHop           bool   `json:"ebgpMultiHop"`
		VRF                    string `json:"vrf"`
		DisableMP              bool   `json:"disableMP"`
		DualStackAddressFamily bool   `json:"dualStackAddressFamily"`
	} `json:"spec"`
}

// MetalLBCommunity is a Community: named aliases for BGP communities.
type MetalLBCommunity struct {
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		Communities []struct {
			Name  string `json:"name"`
			Value string `json:"value"`
		} `json:"communities"`
	} `json:"spec"`
}

// DecodeMetalLB reads YAML or JSON documents (several per stream, and List objects as
// `kubectl get -o yaml` writes them) and keeps MetalLB's objects. Other objects are listed in
// Ignored; a document that does not parse is an error naming its position.
func DecodeMetalLB(r io.Reader, into *MetalLB) error {
	dec := utilyaml.NewYAMLOrJSONDecoder(r, 4096)
	for doc := 1; ; doc++ {
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return fmt.Errorf("document %d: %w", doc, err)
		}
		if len(bytes.TrimSpace(raw)) == 0 || string(raw) == "null" {
			continue
		}
		if err := into.add(raw); err != nil {
			return fmt.Errorf("document %d: %w", doc, err)
		}
	}
}

func (m *MetalLB) add(raw json.RawMessage) error {
	var head struct {
		APIVersion string            `json:"apiVersion"`
		Kind       string            `json:"kind"`
		Metadata   metav1.ObjectMeta `json:"metadata"`
		Items      []json.RawMessage `json:"items"`
	}
	if err := json.Unmarshal(raw, &head); err != nil {
		return err
	}
	if strings.HasSuffix(head.Kind, "List") && head.Items != nil {
		for i, item := range head.Items {
			if err := m.add(item); err != nil {
				return fmt.Errorf("items[%d]: %w", i, err)
			}
		}
		return nil
	}
	group, _, _ := strings.Cut(head.APIVersion, "/")
	id := head.Kind + " " + strings.TrimPrefix(head.Metadata.Namespace+"/"+head.Metadata.Name, "/")
	if group != metallbGroup {
		m.Ignored = append(m.Ignored, id+" ("+head.APIVersion+")")
		return nil
	}
	var err error
	switch head.Kind {
	case "IPAddressPool":
		err = appendDecoded(raw, &m.Pools)
	case "L2Advertisement":
		err = appendDecoded(raw, &m.L2Ads)
	case "BGPAdvertisement":
		err = appendDecoded(raw, &m.BGPAds)
	case "BGPPeer":
		err = appendDecoded(raw, &m.Peers)
	case "Community":
		err = appendDecoded(raw, &m.Communities)
	default:
		m.Ignored = append(m.Ignored, id)
	}
	if err != nil {
		return fmt.Errorf("%s: %w", id, err)
	}
	return nil
}

func appendDecoded[T any](raw json.RawMessage, list *[]T) error {
	var v T
	if err := json.Unmarshal(raw, &v); err != nil {
		return err
	}
	*list = append(*list, v)
	return nil
}
