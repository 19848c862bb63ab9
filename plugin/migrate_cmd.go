package plugin

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/tools/clientcmd"
)

func newMigrateCommand(o *options) *cobra.Command {
	var files []string
	secretNamespace := "ironlb-system"
	cmd := &cobra.Command{
		Use:   "migrate-from-metallb",
		Short: "Write ironlb's objects equivalent to MetalLB's configuration (YAML on stdout, warnings on stderr)",
		Long: `Reads MetalLB's IPAddressPool, L2Advertisement, BGPAdvertisement, BGPPeer and Community
objects from files (-f, several documents each, "-" for stdin) or, without -f, from the cluster,
and writes the equivalent ironlb objects as YAML. What has no equivalent is listed on stderr.
Services keep their addresses: the controller reads MetalLB's annotations and keeps the
addresses Services already hold.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var in MetalLB
			if len(files) > 0 {
				for _, f := range files {
					if err := decodeFile(f, cmd.InOrStdin(), &in); err != nil {
						return err
					}
				}
			} else if err := o.readMetalLB(cmd.Context(), &in, cmd.ErrOrStderr()); err != nil {
				return err
			}
			mig, err := ConvertMetalLB(&in, secretNamespace)
			if err != nil {
				return err
			}
			for _, w := range mig.Warnings {
				fmt.Fprintln(cmd.ErrOrStderr(), "warning:", w)
			}
			if len(mig.Objects) == 0 {
				fmt.Fprintln(cmd.ErrOrStderr(), "warning: no MetalLB object found")
				return nil
			}
			fmt.Fprintln(cmd.OutOrStdout(), "# ironlb objects converted from MetalLB by kubectl ironlb migrate-from-metallb")
			return WriteYAML(cmd.OutOrStdout(), mig.Objects)
		},
	}
	cmd.Flags().StringArrayVarP(&files, "filename", "f", nil, "file of MetalLB objects (YAML or JSON, several documents); - reads stdin; repeatable")
	cmd.Flags().StringVar(&secretNamespace, "secret-namespace", secretNamespace, "namespace ironlb runs in, where BGP password Secrets must be")
	return cmd
}

func decodeFile(name string, stdin io.Reader, into *MetalLB) error {
	r := stdin
	if name != "-" {
		f, err := os.Open(name)
		if err != nil {
			return err
		}
		defer f.Close()
		r = f
	}
	if err := DecodeMetalLB(r, into); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	return nil
}

// readMetalLB lists MetalLB's objects in every namespace. A kind whose CRD is missing is
// reported and skipped; BGPPeer is read as v1beta2, or v1beta1 on an older MetalLB.
func (o *options) readMetalLB(ctx context.Context, into *MetalLB, errOut io.Writer) error {
	cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(o.loading, &o.overrides).ClientConfig()
	if err != nil {
		return fmt.Errorf("client configuration: %w", err)
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return fmt.Errorf("dynamic client: %w", err)
	}
	for _, r := range []struct {
		resource string
		versions []string
	}{
		{"ipaddresspools", []string{"v1beta1"}},
		{"l2advertisements", []string{"v1beta1"}},
		{"bgpadvertisements", []string{"v1beta1"}},
		{"bgppeers", []string{"v1beta2", "v1beta1"}},
		{"communities", []string{"v1beta1"}},
	} {
		found := false
		for _, v := range r.versions {
			list, err := dyn.Resource(schema.GroupVersionResource{Group: metallbGroup, Version: v, Resource: r.resource}).List(ctx, metav1.ListOptions{})
			if apierrors.IsNotFound(err) {
				continue
			}
			if err != nil {
				return fmt.Errorf("listing %s.%s/%s: %w", r.resource, metallbGroup, v, err)
			}
			for _, item := range list.Items {
				raw, err := json.Marshal(item.Object)
				if err != nil {
					return fmt.Errorf("encoding %s %s: %w", r.resource, item.GetName(), err)
				}
				if err := into.add(raw); err != nil {
					return err
				}
			}
			found = true
			break
		}
		if !found {
			fmt.Fprintf(errOut, "warning: the cluster serves no %s.%s (MetalLB's CRDs are not installed?)\n", r.resource, metallbGroup)
		}
	}
	return nil
}
